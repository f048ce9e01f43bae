"""Load a flow function and call it on one line: sync or async, a dict of outputs back."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ERROR_CHARS = 1000


class FlowError(Exception):
    """The flow cannot be loaded or returned something that is not its outputs."""


def load(flow_root: Path, entry: str) -> Callable[..., Any]:
    """`file.py:function` under `flow_root`, imported as a module named after the file."""
    file, _, function = entry.rpartition(":")
    path = Path(flow_root) / file
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the flow's own modules beside it
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise FlowError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    target = getattr(module, function, None)
    if not callable(target):
        raise FlowError(f"{path} has no function {function}()")
    return target


def call(function: Callable[..., Any], inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    result = function(**inputs, **params)
    if inspect.isawaitable(result):  # one loop per thread: async clients outlive a line
        result = _loop().run_until_complete(_awaited(result))
    if not isinstance(result, dict):
        raise FlowError(f"the flow returned {type(result).__name__}, not a dict of outputs")
    return dict(result)  # pyright: ignore[reportUnknownArgumentType] - the flow's own values


_LOCAL = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    if getattr(_LOCAL, "loop", None) is None:
        _LOCAL.loop = asyncio.new_event_loop()
    return _LOCAL.loop


async def _awaited(result: Any) -> Any:
    return await result


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_CHARS]
