"""The entry of a staged composite flex flow: several variants of one flex or prompty flow as
ONE promptflow batch run (one worker pool), like the composite DAG does for node variants.

`staging` copies this file into the staged flow as `__genaiops_composite__.py`, next to
`__genaiops_variants__.json`, and makes `__genaiops_composite__:Composite` the entry:

    {"kind": "flex", "entry": "qa:GroundedQA", "inits": [{...}, {...}], "suffixes": ["__v0", ...]}
    {"kind": "prompty", "files": ["__v0.prompty", ...], "suffixes": [...], "inputs": [...]}

Each line calls every member in turn and returns `<output><suffix>` for each, plus
`__member__<suffix>` (that member's LLM tokens, from promptflow's tracing, and its latency) and,
when a member failed, `__error__<suffix>` instead of its outputs: one variant's failure fails only
its own line. Members run one after another within a line (the run's line workers give the
concurrency): called from threads, promptflow's tracing credited one member's tokens to another.
"""

import dataclasses
import importlib
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
SPEC_FILE = "__genaiops_variants__.json"
ERROR_KEY = "__error__"
METRICS_KEY = "__member__"


def _spec() -> dict[str, Any]:
    """The staged variants (promptflow ships no type information: its objects are `Any` here)."""
    return json.loads((HERE / SPEC_FILE).read_text(encoding="utf-8"))


def _resolve_connections(cls: type, init: dict[str, Any]) -> dict[str, Any]:
    """promptflow turns connection names into connection objects for init parameters typed as
    connections; do the same, since promptflow only sees the composite's (empty) init."""
    try:
        from promptflow.client import PFClient  # pyright: ignore[reportMissingTypeStubs]
        from promptflow.core._connection import (  # pyright: ignore[reportMissingTypeStubs]
            _Connection,  # pyright: ignore[reportPrivateUsage] - the base class promptflow checks too
        )
    except ImportError:  # another promptflow: pass values as they are
        return init
    parameters = inspect.signature(cls.__init__).parameters
    resolved: dict[str, Any] = dict(init)
    for name, value in init.items():
        annotation: object = getattr(parameters.get(name), "annotation", None)
        if isinstance(value, str) and inspect.isclass(annotation) and issubclass(annotation, _Connection):
            resolved[name] = cast(Any, PFClient)().connections.get(name=value, with_secrets=True)
    return resolved


def _flex_member(entry: str, init: dict[str, Any]) -> Callable[..., Any]:
    module_name, _, attr = entry.partition(":")
    target: Any = getattr(importlib.import_module(module_name), attr)
    if inspect.isclass(target):
        return cast("Callable[..., Any]", target(**_resolve_connections(target, init)))
    if init:
        raise TypeError(f"{entry} is a function: it takes no init parameters")
    return target


def _prompty_member(file: str) -> Callable[..., Any]:
    from promptflow.core import Prompty  # pyright: ignore[reportMissingTypeStubs]

    return cast(Any, Prompty).load(source=HERE / file)


def _outputs(value: object) -> dict[str, Any]:
    """A member's return value named the way promptflow names a flex flow's outputs."""
    if isinstance(value, dict):
        return dict(cast("dict[str, Any]", value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return {"output": value}


def _tokens_of(span_id: int) -> dict[str, int]:
    try:
        from promptflow.tracing._trace import (  # pyright: ignore[reportMissingTypeStubs]
            token_collector,  # pyright: ignore[reportUnknownVariableType]
        )
    except ImportError:
        return {}
    tokens: dict[str, Any] = cast(Any, token_collector).try_get_openai_tokens(span_id) or {}
    return {key: int(tokens.get(key) or 0) for key in ("prompt_tokens", "completion_tokens")}


def _run_member(member: Callable[..., Any], inputs: dict[str, Any]) -> tuple[Any, int]:
    from opentelemetry import trace as otel

    span_id = otel.get_current_span().get_span_context().span_id
    return member(**inputs), span_id


class Composite:
    def __init__(self) -> None:
        spec = _spec()
        self.suffixes: list[str] = spec["suffixes"]
        builders: list[Callable[[], Callable[..., Any]]]
        if spec["kind"] == "flex":
            builders = [lambda init=init: _flex_member(spec["entry"], init)  # pyright: ignore[reportUnknownLambdaType]
                        for init in spec["inits"]]
        else:
            builders = [lambda file=file: _prompty_member(file)  # pyright: ignore[reportUnknownLambdaType]
                        for file in spec["files"]]
        self.members: list[tuple[Callable[..., Any] | None, str | None]] = []  # (callable, None) or (None, why it could not be built)
        for build in builders:
            try:
                self.members.append((build(), None))
            except Exception as exc:  # this variant fails every line; the others still run
                self.members.append((None, f"{type(exc).__name__}: {exc}"))
        from promptflow.tracing import trace  # pyright: ignore[reportMissingTypeStubs, reportUnknownVariableType]

        self.traced: Callable[..., tuple[Any, int]] = cast(Any, trace)(_run_member)

    def _call(self, member: Callable[..., Any] | None, error: str | None,
              inputs: dict[str, Any]) -> tuple[Any, str | None, dict[str, Any]]:
        if member is None:
            return None, error, {}
        started = time.monotonic()
        try:
            value, span_id = self.traced(member, inputs)
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}", {"latency_s": time.monotonic() - started}
        return value, None, {**_tokens_of(span_id), "latency_s": time.monotonic() - started}

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for suffix, (member, error) in zip(self.suffixes, self.members):
            value, error, metrics = self._call(member, error, inputs)
            out[METRICS_KEY + suffix] = metrics
            if error is not None:
                out[ERROR_KEY + suffix] = error[:2000]
                continue
            for name, item in _outputs(value).items():
                out[name + suffix] = item
        return out


def _signature() -> inspect.Signature:
    """The composite takes the inputs of the flow it wraps (promptflow maps columns by them): as
    declared in its yaml / front matter, else those of the flex entry's own signature."""
    spec = _spec()
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if spec["inputs"] is None:
        module_name, _, attr = spec["entry"].partition(":")
        target: Any = getattr(importlib.import_module(module_name), attr)
        if inspect.isclass(target):
            return inspect.signature(target.__call__)
        own = list(inspect.signature(target).parameters.values())
        return inspect.Signature([self_parameter] + own)
    parameters = [self_parameter]
    for item in spec["inputs"]:
        default = item["default"] if "default" in item else inspect.Parameter.empty
        parameters.append(inspect.Parameter(item["name"], inspect.Parameter.KEYWORD_ONLY, default=default))
    return inspect.Signature(parameters)


if (HERE / SPEC_FILE).is_file():  # inside a staged flow (not when genaiops itself imports this)
    setattr(Composite.__call__, "__signature__", _signature())  # noqa: B010 - what inspect reads
