"""Read a finished promptflow batch run's folder into per-member line results.

promptflow 1.18 writes one `flow_artifacts/*.jsonl` record per line (status, error, inputs,
outputs, times) and `node_artifacts/<node>/<line>.jsonl` per node (times, token counts when
tracing is on). A composite run's member `i` owns the nodes and outputs suffixed `__v<i>`; a
composite flex run also says per member what its LLM calls cost and how long it took
(`__member__<suffix>`) and why it failed (`__error__<suffix>`), since its lines have no nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from genaiops.engines.base import LineResult, MemberResult
from genaiops.engines.base import json_object as _obj
from genaiops.engines.promptflow.composite_entry import ERROR_KEY, METRICS_KEY


def _time(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _records(folder: Path) -> Iterator[dict[str, Any]]:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def _error_text(error: object) -> str | None:
    if not error:
        return None
    if (fields := _obj(error)) is not None:
        message: object = fields.get("message") or fields.get("code") or json.dumps(error)[:500]
        return str(message)[:1000]
    return str(error)[:1000]


CRASH_MARKERS = ("ProcessCrashError", "Process crashed while executing line")


class CrashWatch:
    """Lines whose promptflow process died (killed, out of memory) while running them, read from
    the run folder as it grows; each artifact file is read again only when it changed."""

    def __init__(self, run_dir: Path):
        self.folder = Path(run_dir) / "flow_artifacts"
        self._sizes: dict[Path, int] = {}

    def crashed_lines(self) -> list[int]:
        found: list[int] = []
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else ():
            try:
                size = path.stat().st_size
                if self._sizes.get(path) == size:
                    continue
                self._sizes[path] = size
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            if not any(marker in text for marker in CRASH_MARKERS):
                continue
            for line in text.splitlines():
                if any(marker in line for marker in CRASH_MARKERS):
                    try:
                        found.append(int((_obj(json.loads(line)) or {})["line_number"]))
                    except (ValueError, TypeError, KeyError):
                        found.append(-1)
        return found


def run_error(run_dir: Path, status: str) -> str:
    """Why a run ended `status`: promptflow's own message (its `error.json`, which holds the run's
    exception or the first line error), not only the status."""
    try:
        data: object = json.loads((run_dir / "error.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    message = _error_text(data) if _obj(data) is not None else None
    return f"promptflow run status {status}: {message}" if message else f"promptflow run status {status}"


def count_finished_lines(run_dir: Path) -> int:
    folder = run_dir / "flow_artifacts"
    return sum(1 for _ in folder.glob("*.jsonl")) if folder.is_dir() else 0


def read_members(run_dir: Path, suffixes: list[str], inputs_by_line: dict[int, dict[str, Any]]) -> list[MemberResult]:
    lines: dict[int, dict[str, Any]] = {}
    for record in _records(run_dir / "flow_artifacts"):
        info = _obj(record.get("run_info")) or {}
        number: Any = record.get("line_number", info.get("index"))
        lines[int(number)] = info
    nodes: dict[int, list[dict[str, Any]]] = {}
    node_root = run_dir / "node_artifacts"
    if node_root.is_dir():
        for node_dir in sorted(p for p in node_root.iterdir() if p.is_dir()):
            for record in _records(node_dir):
                info = _obj(record.get("run_info")) or {}
                index: Any = info.get("index")
                if index is not None:
                    nodes.setdefault(int(index), []).append(info)

    members: list[MemberResult] = []
    for suffix in suffixes:
        results: list[LineResult] = []
        for number in sorted(set(inputs_by_line) | set(lines)):
            info = lines.get(number, {})
            results.append(_member_line(number, info, nodes.get(number, []), suffix,
                                        inputs_by_line.get(number, _obj(info.get("inputs")) or {})))
        members.append(MemberResult(suffix=suffix, lines=results))
    return members


def _member_line(number: int, info: dict[str, Any], node_infos: list[dict[str, Any]], suffix: str,
                 inputs: dict[str, Any]) -> LineResult:
    mine = [n for n in node_infos if not suffix or str(n.get("node", "")).endswith(suffix)]
    output = _obj(info.get("output"))
    outputs: dict[str, Any] | None = None
    member: dict[str, Any] | None = None
    member_error: object = None
    if output is not None:
        if suffix:
            picked = {k[: -len(suffix)]: v for k, v in output.items() if k.endswith(suffix)}
            member = _obj(picked.pop(METRICS_KEY, None))
            member_error = picked.pop(ERROR_KEY, None)
            outputs = picked or None
        else:
            outputs = output
    failed_node = next((n for n in mine if n.get("status") == "Failed"), None)
    node_error = _error_text(failed_node.get("error")) if failed_node else None
    node_error = node_error or (_error_text(member_error) if member_error else None)
    line_ok = info.get("status") == "Completed" and outputs is not None and member_error is None
    error = None
    if not line_ok:
        error = node_error or _error_text(info.get("error")) or (
            "line did not run (cancelled or timed out)" if not info else "line failed")
        if suffix and not node_error and info.get("status") == "Failed":
            error = f"line stopped by another variant's failure: {error}"
    starts = [t for n in mine if (t := _time(n.get("start_time"))) is not None]
    ends = [t for n in mine if (t := _time(n.get("end_time"))) is not None]
    latency: float | None
    if starts and ends:
        latency = max(ends) - min(starts)
    elif member is not None and member.get("latency_s") is not None:
        latency = float(member["latency_s"])
    else:
        begin, end = _time(info.get("start_time")), _time(info.get("end_time"))
        latency = (end - begin) if begin and end else None
    if mine:
        prompt = sum(int((_obj(n.get("system_metrics")) or {}).get("prompt_tokens", 0) or 0) for n in mine)
        completion = sum(int((_obj(n.get("system_metrics")) or {}).get("completion_tokens", 0) or 0)
                         for n in mine)
    else:  # flex/prompty: the member's own tokens in a composite, else those of the whole line
        metrics = member if member is not None else _obj(info.get("system_metrics")) or {}
        prompt = int(metrics.get("prompt_tokens", 0) or 0)
        completion = int(metrics.get("completion_tokens", 0) or 0)
    return LineResult(line=number, ok=line_ok, inputs=inputs, outputs=outputs, error=error,
                      latency_s=round(latency, 4) if latency is not None else None,
                      prompt_tokens=prompt, completion_tokens=completion,
                      node=_node_name(failed_node, suffix) if failed_node and not line_ok else None)


def _node_name(node_info: dict[str, Any], suffix: str) -> str | None:
    """A node's name as the flow spells it (a composite's copy drops its member suffix)."""
    name = str(node_info.get("node") or "")
    return (name[: -len(suffix)] if suffix and name.endswith(suffix) else name) or None
