"""Our retry policy for LLM calls inside promptflow workers.

promptflow-tools retries 429/5xx/timeouts itself, up to 100 times with 3..60 s back-off when the
server sends no Retry-After: a persistently failing endpoint then holds every line until its
timeout and the real cause is lost. We replace its back-off function (looked up at call time)
with ours: exponential from `backoff_sec`, and after `max_attempts` we stop with the last error.
Retry-After headers are still honoured by promptflow-tools (it skips the back-off function).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

ENV_ATTEMPTS = "GENAIOPS_RETRY_MAX_ATTEMPTS"
ENV_BACKOFF = "GENAIOPS_RETRY_BACKOFF_SEC"
TARGET = "promptflow.tools.common"


class RetriesExhausted(Exception):
    """The LLM endpoint kept failing after every attempt our policy allows."""


def _patch(common, max_attempts: int, backoff: float) -> None:
    def interval(retry_count: int) -> float:
        if retry_count + 1 >= max_attempts:
            error = sys.exc_info()[1]  # called while promptflow-tools handles the API error
            detail = f"{type(error).__name__}: {error}" if error else "LLM call failed"
            raise RetriesExhausted(f"gave up after {retry_count + 1} attempt(s): {detail}") from error
        return min(backoff * (2 ** retry_count), 30.0)

    common.generate_retry_interval = interval


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches promptflow.tools.common right after it is imported (line workers import it late)."""

    def __init__(self, max_attempts: int, backoff: float):
        self.settings = (max_attempts, backoff)

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
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
    """Apply the policy in this process, now or when promptflow-tools gets imported.

    promptflow's line workers are forked from a *spawned* manager process, so the orchestrator
    also puts `bootstrap/` (a sitecustomize) on their PYTHONPATH, which calls this at start-up.
    """
    if ENV_ATTEMPTS not in os.environ:
        return
    max_attempts = max(1, int(os.environ[ENV_ATTEMPTS]))
    backoff = float(os.environ.get(ENV_BACKOFF, "0.5"))
    module = sys.modules.get(TARGET)
    if module is not None:
        _patch(module, max_attempts, backoff)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(max_attempts, backoff))


BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
