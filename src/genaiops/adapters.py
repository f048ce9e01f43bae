"""Named adapters (engines, registry backends, deployment targets): one kind of table, one loader.

Each table maps a name to `module:Class`. Built-in names are written in the table's home
(`engines/__init__.py`, `registry/__init__.py`, `deploy/targets/__init__.py`); more come
without touching genaiops' source, from

- the entry point group `genaiops.<kind>` of an installed package, or
- the environment variable `GENAIOPS_<KIND>`: `name=module:Class[,name=module:Class...]`
  (e.g. `GENAIOPS_ENGINES=toy=toy_engine:ToyEngine`; the module must be importable).

Loading imports the adapter's module only when it is asked for, so `--help` stays fast.
"""

from __future__ import annotations

import importlib
import os
import re
from importlib import metadata

from genaiops.errors import UsageError

_ITEM = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?P<target>[\w.]+:[\w.]+)\s*$")


class AdapterTable:
    """`name -> module:Class` for one kind of adapter (`what` names it in messages)."""

    def __init__(self, kind: str, what: str, builtin: dict[str, str]):
        self.kind = kind  # engines | registries | targets
        self.what = what  # "engine", "registry backend", ...
        self.builtin = dict(builtin)
        self.env_var = f"GENAIOPS_{kind.upper()}"
        self.group = f"genaiops.{kind}"

    def table(self) -> dict[str, str]:
        """Every known name: built-ins, then entry points, then the environment variable."""
        found = dict(self.builtin)
        try:
            for point in metadata.entry_points(group=self.group):
                found.setdefault(point.name, point.value)
        except Exception:  # noqa: BLE001 - a broken distribution must not hide the built-ins
            pass
        for item in filter(str.strip, os.environ.get(self.env_var, "").split(",")):
            match = _ITEM.match(item)
            if not match:
                raise UsageError(f"{self.env_var}: {item.strip()!r} is not name=module:Class",
                                 hint=f"e.g. {self.env_var}=my_{self.kind}=my_package.module:MyClass")
            found[match.group("name")] = match.group("target")
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self.table())

    def load(self, name: str) -> type:
        """The class registered as `name` (UsageError: unknown, or its module does not load)."""
        table = self.table()
        if name not in table:
            raise UsageError(f"unknown {self.what} {name!r}", hint=f"use one of: {', '.join(table)}")
        module_name, _, attribute = table[name].partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"{self.what} {name!r} ({table[name]}) cannot be loaded: {exc}",
                             hint=f"install the package that provides it, or correct "
                                  f"{self.env_var} / the `{self.group}` entry point") from exc
        return target  # type: ignore[return-value]

    def create(self, name: str, **kwargs):
        """An instance of `name`, given those of `kwargs` its constructor takes."""
        import inspect

        target = self.load(name)
        accepted = inspect.signature(target).parameters
        return target(**{k: v for k, v in kwargs.items() if k in accepted})
