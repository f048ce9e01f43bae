"""Load an app's `build` function and run one input through what it returns.

The contract (docs/migration.md): `app.py` defines `build(llm, **params)` returning an Agent or a
Workflow, plus literal `INPUTS` and `OUTPUTS` name tuples. `llm` gives chat clients for the use
case's connections; `params` are the variant's named parameters.

- a Workflow receives the inputs as one dict and must yield its outputs: a dict of OUTPUTS, or a
  single value when OUTPUTS names one output;
- an Agent receives the text of the only input and answers the only output (`response.text`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from genaiops_af_runtime.llm import CURRENT_USAGE, Connections, Usage


class AppError(Exception):
    """The app broke the contract (message says how to fix it)."""


class NodeFailed(Exception):
    """A workflow executor or an agent failed; `node` names it (the line's record keeps it, so
    that a failure - a replay miss first - says where in the app it happened)."""

    def __init__(self, node: str | None, message: str):
        super().__init__(message)
        self.node = node


def load_build(flow_root: Path, entry: str):
    """`entry` is `file.py:function`, relative to `flow_root` (which goes on sys.path)."""
    file_name, _, function = entry.partition(":")
    path = Path(flow_root) / file_name
    if str(flow_root) not in sys.path:
        sys.path.insert(0, str(flow_root))
    spec = importlib.util.spec_from_file_location(f"genaiops_app_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, function or "build", None)
    if not callable(build):
        raise AppError(f"{path.name} has no function {function or 'build'}")
    return build


def failed_executor(exc: BaseException) -> str | None:
    """The id of the workflow executor an exception came out of: the innermost frame of its
    traceback that runs an `Executor` method (a workflow re-raises an executor's error as is)."""
    from agent_framework import Executor

    node, tb = None, exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Executor):
            node = getattr(owner, "id", None) or node
        tb = tb.tb_next
    return node


@dataclass
class LineRun:
    outputs: dict
    usage: Usage


class App:
    """One variant of an app: `build(llm, **params)` once per line (a Workflow runs one input at
    a time), the inputs and outputs it declares."""

    def __init__(self, build, llm: Connections, params: dict, inputs: tuple, outputs: tuple):
        self.build = build
        self.llm = llm
        self.params = dict(params or {})
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    async def run(self, inputs: dict) -> LineRun:
        usage = Usage()
        token = CURRENT_USAGE.set(usage)  # tasks the workflow starts inherit this context
        try:
            target = self.build(self.llm, **self.params)
            outputs = await self._run(target, inputs)
        finally:
            CURRENT_USAGE.reset(token)
        return LineRun(outputs, usage)

    async def _run(self, target, inputs: dict) -> dict:
        from agent_framework import Workflow

        if isinstance(target, Workflow):
            try:
                result = await target.run(dict(inputs))
            except Exception as exc:
                node = failed_executor(exc)
                if node is None:
                    raise
                raise NodeFailed(node, f"{type(exc).__name__}: {exc}") from exc
            return self._workflow_outputs(result)
        if callable(getattr(target, "run", None)):
            return await self._agent_outputs(target, inputs)
        raise AppError(f"build() returned {type(target).__name__}; return an Agent or a Workflow")

    def _workflow_outputs(self, result) -> dict:
        failed = [e for e in result if getattr(e, "type", None) in ("failed", "error")]
        if failed:
            detail = getattr(failed[-1], "details", None) or getattr(failed[-1], "data", None)
            node = getattr(detail, "executor_id", None) or getattr(failed[-1], "executor_id", None)
            raise NodeFailed(node, f"workflow failed: {getattr(detail, 'message', None) or detail}")
        outputs = result.get_outputs()
        if not outputs:
            raise AppError("the workflow yielded no output (call `await ctx.yield_output(...)` "
                           "in its last executor)")
        return self._as_outputs(outputs[-1])

    async def _agent_outputs(self, agent, inputs: dict) -> dict:
        if len(self.inputs) != 1:
            raise AppError(f"an Agent takes one input, the app declares INPUTS = {self.inputs}; "
                           "return a Workflow for several inputs")
        value = inputs.get(self.inputs[0])
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        try:
            response = await agent.run(text)
        except Exception as exc:
            raise NodeFailed(getattr(agent, "name", None), f"{type(exc).__name__}: {exc}") from exc
        return self._as_outputs(response.text)

    def _as_outputs(self, value) -> dict:
        if isinstance(value, dict):
            missing = [name for name in self.outputs if name not in value]
            if missing:
                raise AppError(f"the app's output lacks {missing} (OUTPUTS = {self.outputs})")
            return {name: value[name] for name in self.outputs} if self.outputs else dict(value)
        if len(self.outputs) == 1:
            return {self.outputs[0]: value}
        raise AppError(f"the app returned a {type(value).__name__}, but OUTPUTS = {self.outputs} "
                       "needs a dict with those keys")


def bind_inputs(mapping: dict, row: dict) -> dict:
    """A dataset row through the column mapping (`${data.col}` or a literal value)."""
    values = {}
    for name, ref in mapping.items():
        if isinstance(ref, str) and ref.startswith("${data.") and ref.endswith("}"):
            column = ref[len("${data."):-1]
            if column not in row:
                raise AppError(f"column {column!r} is not in this row (mapping {name}: {ref})")
            values[name] = row[column]
        elif isinstance(ref, str) and ref.startswith("${"):
            raise AppError(f"unsupported reference {ref} (the agent_framework engine maps "
                           "${data.<column>} and literals)")
        else:
            values[name] = ref
    return values
