"""Our retry policy for LLM calls inside promptflow workers: every retry stops at
`runtime.retries.max_attempts` attempts or `max_total_sec` seconds, whichever comes first.

promptflow retries 429/5xx/timeouts itself in two places, each a `handle_openai_error` decorator
applied when the tools are defined: promptflow-tools (LLM nodes; 100 tries, 3..60 s back-off)
and promptflow-core (`.prompty`; 10 tries, sync and async). Both wait `Retry-After` when the
server sends one - without calling their back-off function - so a persistent 429 made 101
requests a call. Both call `time.sleep` / `asyncio.sleep` once before every retry, inside the
`except` block and with the retry index `i` as a local of the decorator's wrapper, so we give
each module a `time`/`asyncio` whose `sleep` first asks our policy: past the limit it raises
`RetriesExhausted` with the last error, else it sleeps what the server or our back-off (from
`backoff_sec`, doubling) asks, never past the time left. A persistently failing endpoint then
fails the line with the real cause instead of holding it until the line timeout.

Behind the LLM gateway `max_attempts` is 1 (`llm_session.engine_retries`): the gateway already
retried within `runtime.retries` and must see every 429 to schedule around it; its final answer
says what it tried, so that error is raised as it is. Without the gateway (disabled, or the
Azure ML backend) the policy above applies in the workers.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from genaiops.engines.base import RetrySettings

ENV_ATTEMPTS = "GENAIOPS_RETRY_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_RETRY_BACKOFF_SEC"
ENV_MAX_TOTAL = "GENAIOPS_RETRY_MAX_TOTAL_SEC"
TARGETS = ("promptflow.tools.common", "promptflow.core._prompty_utils")
RETRY_INDEX = "i"  # the retry counter of handle_openai_error's wrapper (promptflow-tools/-core)


class RetriesExhausted(Exception):
    """The LLM endpoint kept failing after every attempt (or all the time) our policy allows."""


class RetryPolicy:
    """Limits shared by every retrying call of a process; state is kept per call (wrapper frame)."""

    def __init__(self, max_attempts: int, backoff: float, max_total: float):
        self.max_attempts, self.backoff, self.max_total = max(1, max_attempts), backoff, max_total
        self._first_failure: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()

    def interval(self, retry_count: int) -> float:
        """Our back-off for a retry without Retry-After (promptflow's generate_retry_interval)."""
        return min(self.backoff * (2 ** retry_count), 30.0)

    def allowed_wait(self, requested: float, caller: FrameType | None) -> float:
        """How long to wait before the next attempt of the call running in `caller` (the wrapper
        frame), or RetriesExhausted when the policy allows no further attempt."""
        index: object = caller.f_locals.get(RETRY_INDEX) if caller is not None else None
        key = (threading.get_ident(), id(caller))
        now = time.monotonic()
        with self._lock:
            if index == 0 or key not in self._first_failure:
                self._first_failure[key] = now
            spent = now - self._first_failure[key]
        attempts = index + 1 if isinstance(index, int) else None
        reason = None
        if attempts is not None and attempts >= self.max_attempts:
            reason = f"gave up after {attempts} attempt(s)"
        elif spent + max(requested, 0.0) > self.max_total:
            reason = (f"gave up after {attempts or 'several'} attempt(s) and {spent:.1f}s: the next "
                      f"wait ({requested:g}s) would pass runtime.retries.max_total_sec "
                      f"{self.max_total:g}")
        if reason is None:
            return max(requested, 0.0)
        with self._lock:
            self._first_failure.pop(key, None)
        error = sys.exc_info()[1]  # called while promptflow handles the API error
        if self.max_attempts == 1 and error is not None:
            raise error  # the gateway's answer says what it tried and why it stopped
        detail = f"{type(error).__name__}: {error}" if error else "LLM call failed"
        raise RetriesExhausted(f"{reason}: {detail}") from error


class _Module:
    """A stand-in for a module (`time`, `asyncio`) whose `sleep` consults the policy first."""

    def __init__(self, module: ModuleType, sleep: Callable[..., Any]):
        self._module = module
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _patch(module: ModuleType, policy: RetryPolicy) -> None:
    """Give `module` our back-off and sleeps; patching again (a warm worker's next job) replaces
    the policy."""
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        real_sleep(policy.allowed_wait(float(seconds), sys._getframe(1)))  # pyright: ignore[reportPrivateUsage]

    def async_sleep(seconds: float, *args: Any, **kwargs: Any) -> Awaitable[Any]:  # the wrapper awaits it
        return real_async_sleep(policy.allowed_wait(float(seconds), sys._getframe(1)),  # pyright: ignore[reportPrivateUsage]
                                *args, **kwargs)

    setattr(module, "generate_retry_interval", policy.interval)  # noqa: B010 - promptflow's names
    if isinstance(getattr(module, "time", None), (ModuleType, _Module)):
        setattr(module, "time", _Module(time, sleep))  # noqa: B010
    if isinstance(getattr(module, "asyncio", None), (ModuleType, _Module)):
        setattr(module, "asyncio", _Module(asyncio, async_sleep))  # noqa: B010


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches the retrying modules right after they are imported (line workers import them late)."""

    def __init__(self, policy: RetryPolicy, pending: set[str]):
        self.policy, self.pending = policy, pending

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        index = sys.meta_path.index(self)
        sys.meta_path.remove(self)  # find the real spec without meeting ourselves again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            if self.pending:
                sys.meta_path.insert(index, self)
        if spec is None or spec.loader is None:
            return spec
        original, policy = spec.loader.exec_module, self.policy

        def exec_module(module: ModuleType) -> None:
            original(module)
            _patch(module, policy)

        setattr(spec.loader, "exec_module", exec_module)  # noqa: B010 - patch this one import
        return spec


def policy_from_env() -> RetryPolicy | None:
    if ENV_ATTEMPTS not in os.environ:
        return None
    return RetryPolicy(int(os.environ[ENV_ATTEMPTS]), float(os.environ.get(ENV_BACKOFF, "0.5")),
                       float(os.environ.get(ENV_MAX_TOTAL, "60")))


def install_from_env() -> None:
    """Apply the policy in this process, now or when the retrying modules get imported.

    promptflow's line workers are forked from a manager process that genaiops starts with the
    job's environment (`fastbatch`); processes started by spawn get `bootstrap/` (a
    sitecustomize) on their PYTHONPATH, which calls this at start-up. A warm worker calls it
    again for every job: the job's policy replaces the previous one.
    """
    policy = policy_from_env()
    if policy is None:
        return
    pending: set[str] = set()
    for name in TARGETS:
        if name in sys.modules:
            _patch(sys.modules[name], policy)
        else:
            pending.add(name)
    for finder in [f for f in sys.meta_path if isinstance(f, _PatchOnImport)]:
        sys.meta_path.remove(finder)
    if pending:
        sys.meta_path.insert(0, _PatchOnImport(policy, pending))


def environment(retries: RetrySettings) -> dict[str, str]:
    """The variables that carry `runtime.retries` into worker processes."""
    return {ENV_ATTEMPTS: str(retries.max_attempts), ENV_BACKOFF: str(retries.backoff_sec),
            ENV_MAX_TOTAL: str(retries.max_total_sec)}


BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
