"""The variable groups as docs/azure-devops.md documents them (its "variable | groups | secret" table):
what the pipeline tests hold the configs and the contract test's fixture to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "azure-devops.md"
ROW = re.compile(r"^\| `(\w+)` \| ([a-z, ]+?)( \(optional\))? \| (\*\*yes\*\*|no) \|")


@dataclass(frozen=True)
class Documented:
    name: str
    groups: frozenset[str]  # pr | dev | prod
    optional: bool
    secret: bool


def documented_variables(docs: Path = DOCS) -> dict[str, Documented]:
    found = {}
    for line in docs.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            name, groups, optional, secret = match.groups()
            found[name] = Documented(name, frozenset(g.strip() for g in groups.split(",")), bool(optional),
                                     secret != "no")
    return found
