"""Everything the CLI shows a person or a machine goes through here, redacted."""

from __future__ import annotations

import json
import sys

from genaiops.secrets import redact


def out(text: str = "") -> None:
    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(redact(text) + "\n")
    sys.stderr.flush()


def emit_json(obj) -> None:
    out(json.dumps(obj, indent=2, sort_keys=True, default=str))


def table(rows: list[dict], columns: list[str] | None = None, *, blank: str = "") -> str:
    """A plain aligned text table (no dependency, copy-paste friendly); `blank` stands for a
    missing value where an empty cell would shift the columns of `split()`-reading scripts."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[(blank if r.get(c) in (None, "") else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])
