"""Our retry policy for LLM calls inside promptflow workers.

promptflow-tools (DAG `llm` nodes) and promptflow-core's prompty (flex flows, `.prompty`) retry
429/5xx/timeouts themselves: up to 100 (tools) or 10 (prompty) times with 3..60 s back-off when
the server sends no Retry-After. A persistently failing endpoint then holds every line until its
timeout and the real cause is lost, and retries the LLM gateway cannot see defeat its scheduling.
We replace their back-off functions (looked up at call time) with ours: exponential from
`backoff_sec`, and after `max_attempts` we stop with the last error.

Behind the LLM gateway `max_attempts` is 1: the gateway already retried within
`runtime.retries`, and its final answer carries no Retry-After, so the SDK gives up at once
with the gateway's message. Without the gateway (Azure ML backend) Retry-After headers are
still honoured by promptflow (it then skips the back-off function).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

ENV_ATTEMPTS = "GENAIOPS_RETRY_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_RETRY_BACKOFF_SEC"
TARGETS = ("promptflow.tools.common", "promptflow.core._prompty_utils")


class RetriesExhausted(Exception):
    """The LLM endpoint kept failing after every attempt our policy allows."""


def _patch(module, max_attempts: int, backoff: float) -> None:
    def interval(retry_count: int) -> float:
        if retry_count + 1 >= max_attempts:
            error = sys.exc_info()[1]  # called while promptflow handles the API error
            if max_attempts == 1 and error is not None:
                raise error  # the gateway's answer says what it tried and why it stopped
            detail = f"{type(error).__name__}: {error}" if error else "LLM call failed"
            raise RetriesExhausted(f"gave up after {retry_count + 1} attempt(s): {detail}") from error
        return min(backoff * (2 ** retry_count), 30.0)

    module.generate_retry_interval = interval


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a target module right after it is imported (line workers import them late)."""

    def __init__(self, max_attempts: int, backoff: float):
        self.settings = (max_attempts, backoff)
        self.pending = {name for name in TARGETS if name not in sys.modules}

    def find_spec(self, fullname, path, target=None):
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
        original = spec.loader.exec_module
        settings = self.settings

        def exec_module(module):
            original(module)
            _patch(module, *settings)

        spec.loader.exec_module = exec_module
        return spec


def install_from_env() -> None:
    """Apply the policy in this process, now or when the target modules get imported.

    promptflow's line workers are forked from a manager process that genaiops starts with the
    job's environment (`fastbatch`); processes started by spawn get `bootstrap/` (a
    sitecustomize) on their PYTHONPATH, which calls this at start-up.
    """
    if ENV_ATTEMPTS not in os.environ:
        return
    max_attempts = max(1, int(os.environ[ENV_ATTEMPTS]))
    backoff = float(os.environ.get(ENV_BACKOFF, "0.5"))
    for name in TARGETS:
        module = sys.modules.get(name)
        if module is not None:
            _patch(module, max_attempts, backoff)
    for finder in [f for f in sys.meta_path if isinstance(f, _PatchOnImport)]:
        sys.meta_path.remove(finder)
    finder = _PatchOnImport(max_attempts, backoff)
    if finder.pending:
        sys.meta_path.insert(0, finder)


BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
