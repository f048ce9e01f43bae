"""How a YAML config format is declared: frozen pydantic models whose fields are the file's keys.

One model per file format is the only description of that format: its JSON Schema is generated
(`config.schemagen`) and locates problems in the file, and `model_validate` builds the typed,
immutable objects. What the file does not hold - repo root, use case, env, files read, absolute
paths, flow specs - comes from the `LoadContext` passed as validation context; models expose it
through read-only properties next to the values as written (`source_rel` / `source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, WrapValidator

from genaiops.workspace.repo import resolve_inside

if TYPE_CHECKING:
    from genaiops.engines.base import FlowSpec

ENV_NAME = r"^[a-z][a-z0-9_-]{0,30}$"  # overlay names (`experiment.<env>.yaml`), deployment envs


def _keep_integers(value, handler):
    """A number written as `1` stays the int 1 (pydantic's float would turn it into 1.0)."""
    checked = handler(value)
    return value if type(value) is int else checked


_KEEP_INT = WrapValidator(_keep_integers)  # last in each Annotated: constraints stay in the schema
Number = Annotated[float, _KEEP_INT]
NonNegative = Annotated[float, Field(ge=0), _KEEP_INT]
Positive = Annotated[float, Field(gt=0), _KEEP_INT]
Probability = Annotated[float, Field(gt=0, lt=1), _KEEP_INT]  # open interval (0, 1)
Share = Annotated[float, Field(gt=0, le=1), _KEEP_INT]  # (0, 1]: a part of something, up to all
WindowSec = Annotated[float, Field(gt=0, le=60), _KEEP_INT]  # a rate-limit window, up to a minute
PositiveInt = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]
RelPath = NonEmpty  # a path relative to the repository root, as written in the file


class FileModel(BaseModel):
    """A block of a config file: unknown keys are errors, and the loaded object is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def written(self, *, exclude: frozenset[str]) -> dict:
        """The optional settings the file actually set (in field order), minus `exclude`."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if name in self.model_fields_set and name not in exclude}


@dataclass(frozen=True)
class LoadContext:
    """What loading a file learnt beyond its text, handed to `model_validate(context=...)`."""

    repo_root: Path
    use_case: str
    env: str | None
    files: tuple[Path, ...]  # base file and overlay actually read
    flows: Mapping[str, FlowSpec] = field(default_factory=dict)  # by the path as written

    def path(self, relative: str) -> Path | None:
        """Absolute path of a repo-relative value; None when it escapes the repository."""
        return resolve_inside(self.repo_root, relative)


def load_context(context: Any) -> LoadContext:
    if not isinstance(context, LoadContext):
        raise TypeError("config models are built by load_experiment / load_deployment "
                        "(model_validate(data, context=LoadContext(...)))")
    return context


def _from_context(name: str, doc: str) -> property:
    """A read-only attribute taken from the LoadContext: the file never holds it."""
    return property(lambda self: getattr(self._loaded, name), doc=doc)


class ConfigFile(FileModel):
    """A whole config file (base + overlay): also knows where and for what it was loaded."""

    _loaded: LoadContext = PrivateAttr()
    use_case = _from_context("use_case", "the folder under configs/ (str)")
    env = _from_context("env", "the overlay asked for (str | None)")
    repo_root = _from_context("repo_root", "absolute repository root (Path)")
    files = _from_context("files", "base file and overlay actually read (tuple[Path, ...])")

    def model_post_init(self, context: Any, /) -> None:
        self._loaded = load_context(context)
