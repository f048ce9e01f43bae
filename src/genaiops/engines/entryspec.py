"""A flow that is a Python callable in a file (`file.py:function`), read with `ast` without
importing it: the python engine's functions and the Agent Framework's `build` functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EntrySpec:
    root: Path  # the folder holding the file (its content is the flow's identity)
    file: Path
    function: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    parameters: frozenset[str]  # the keyword parameters a variant may set
    any_parameter: bool  # takes **kwargs

    @property
    def entry(self) -> str:
        """`file.py:function`, relative to `root`."""
        return f"{self.file.relative_to(self.root).as_posix()}:{self.function}"

    def unknown_parameters(self, params: dict[str, Any]) -> list[str]:
        return [] if self.any_parameter else sorted(set(params) - self.parameters)
