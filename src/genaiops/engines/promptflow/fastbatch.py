"""Cut promptflow's fixed cost per batch run inside a genaiops worker process (promptflow 1.18).

Measured on 2 cores (10 rows, instant LLM): a plain `pf.run` costs ~5.4 s, of which the lines
take well under a second. The rest is (1) a fresh *spawned* process per run that re-imports
promptflow (~2.4 s of CPU) only to fork the line processes from a clean parent, and (2) polling
loops that sleep a whole second between checks (process ready, batch complete, process gone).

- `use_forkserver()`: the per-run manager process is forked from a multiprocessing forkserver
  (a clean parent without any run's threads, which is what the spawn was for) that is itself a
  fork of the warm worker, taken right after it imported promptflow; the job's environment
  travels with each manager, so one forkserver serves jobs with different retry policies or
  worker counts.
- `shorten_polls()`: those one-second sleeps become `POLL_SECONDS`.
- `node_concurrency()`: promptflow runs at most 2 nodes of a line at once in a batch run; a
  composite DAG of k variants asks for 2k (`NODE_CONCURRENCY_ENV`), so its chains run side by side.
- `light_tracing()`: promptflow's content enrichers skip spans that record nothing (`genaiops_pf_serve`).
- `light_line_results()`: what a line process sends back leaves out the run infos' `api_calls`.
- `fresh_store_locks()`: forked processes get their own lock objects for promptflow's local
  store, which filelock otherwise refuses after a fork (a flex class or a prompty reading its
  connection in a line process); this is also what lets prompty run forked instead of spawned.

With a warm worker a second run of the same 10 rows takes ~0.9 s instead of ~5.5 s. Both
patches check that promptflow still has the shape they expect and leave it alone otherwise.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

POLL_SECONDS = 0.05
NODE_CONCURRENCY_ENV = "GENAIOPS_NODE_CONCURRENCY"
MAX_NODE_CONCURRENCY = 16  # what promptflow itself allows a single line outside batch runs
# imported once by the forkserver, so a run's manager process starts without importing them
PRELOAD = (
    "genaiops.engines.promptflow.fastbatch",
    "genaiops.engines.promptflow.retry_policy",
    "promptflow.executor._process_manager",
    "promptflow.executor._line_execution_process_pool",
    "promptflow.executor.flow_executor",
    "promptflow.tools.common",
    "promptflow.tools.openai",
    "promptflow.tools.aoai",
    "promptflow.core._prompty_utils",
    "promptflow._sdk._orm.session",
    "promptflow.tracing._integrations._openai_injector",
    "openai.resources",
)


class _ShortSleeps:
    """Stands in for the `time` or `asyncio` module inside one promptflow module: the same
    module, except that `sleep` waits at most `POLL_SECONDS` (the callers poll in a loop)."""

    def __init__(self, module: ModuleType):
        self._module: Any = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def sleep(self, seconds: float, *args: Any, **kwargs: Any) -> Any:
        return self._module.sleep(min(seconds, POLL_SECONDS), *args, **kwargs)


def shorten_polls() -> bool:
    """promptflow's batch engine and process pools poll with 1 s sleeps: shorter ones (the modules
    are promptflow's private ones, typed `ModuleType` here)."""
    from promptflow.batch import _batch_engine  # pyright: ignore[reportMissingTypeStubs, reportPrivateUsage]
    from promptflow.executor import (  # pyright: ignore[reportMissingTypeStubs]
        _line_execution_process_pool,  # pyright: ignore[reportPrivateUsage]
        _process_manager,  # pyright: ignore[reportPrivateUsage]
    )

    targets: tuple[tuple[ModuleType, str, ModuleType], ...] = ((_batch_engine, "asyncio", asyncio), (_line_execution_process_pool, "asyncio", asyncio),
               (_process_manager, "time", time))
    for module, name, real in targets:
        current = getattr(module, name, None)
        if current is not real and not isinstance(current, _ShortSleeps):
            return False
    for module, name, real in targets:
        setattr(module, name, _ShortSleeps(real))
    return True


def node_concurrency() -> bool:
    """Nodes of one line run at once: promptflow's batch default (2), or what the job asks for."""
    wanted = os.environ.get(NODE_CONCURRENCY_ENV)
    from promptflow.executor import (  # pyright: ignore[reportMissingTypeStubs]
        _line_execution_process_pool as pool,  # pyright: ignore[reportPrivateUsage]
    )

    if not wanted or not hasattr(pool, "DEFAULT_CONCURRENCY_BULK"):
        return False
    setattr(pool, "DEFAULT_CONCURRENCY_BULK", max(1, min(int(wanted), MAX_NODE_CONCURRENCY)))  # noqa: B010
    return True


def _forkserver_context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def start_forkserver() -> None:
    """Start the forkserver now, so the first run does not wait for it.

    Called once promptflow is imported and before any run, the forkserver is a fork of this
    process: it has promptflow imported already (and imports the rest of PRELOAD itself), and no
    run's threads. (multiprocessing would start a fresh interpreter that imports all of PRELOAD:
    another ~2 CPU-seconds per worker.) If that fork cannot be made, multiprocessing's own
    forkserver serves instead.
    """
    from multiprocessing import forkserver

    _forkserver_context()
    try:
        _fork_forkserver(forkserver._forkserver)  # pyright: ignore[reportPrivateUsage] - its one instance
    except OSError:
        forkserver.ensure_running()


def _fork_forkserver(server: Any) -> None:
    """multiprocessing's `ForkServer.ensure_running`, with `os.fork()` where it spawns."""
    import socket
    from multiprocessing import connection, forkserver, resource_tracker

    with server._lock:
        if server._forkserver_pid is not None:
            return
        resource_tracker.ensure_running()
        with socket.socket(socket.AF_UNIX) as listener:
            address: str = cast(Any, connection).arbitrary_address("AF_UNIX")  # not in typeshed
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()  # the server stops when every holder of alive_w is gone
            pid = os.fork()
            if pid == 0:  # the forkserver: serve until alive_w closes, then leave
                try:
                    os.close(alive_w)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the worker's handler is not ours
                    # imports what runs need beyond promptflow.client (tools, openai) while the
                    # worker serves its first command
                    forkserver.main(listener.fileno(), alive_r, list(PRELOAD))
                finally:
                    os._exit(0)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid


def _run_manager(environment: dict[str, Any], target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """The per-run manager process: the job's environment first (worker count, retry policy,
    timeouts), then promptflow's own manager loop, which forks the line processes."""
    os.environ.update(environment)
    from genaiops.engines.promptflow.retry_policy import install_from_env

    install_from_env()
    shorten_polls()
    node_concurrency()
    fresh_store_locks()
    target(*args, **kwargs)


def _renew_store_locks() -> None:
    session = sys.modules.get("promptflow._sdk._orm.session")
    if session is None:
        return
    from filelock import FileLock

    for name in ("lock", "trace_lock"):
        inherited = getattr(session, name, None)
        if isinstance(inherited, FileLock):
            setattr(session, name, FileLock(inherited.lock_file))


_FORK_HOOK: list[bool] = []


def fresh_store_locks() -> None:
    """promptflow guards its local store (connections, runs) with module-level file locks, and
    filelock refuses a lock object inherited across fork. A flow that reads a connection in a
    forked process (a flex class's init in the manager, a prompty's per line) would fail there, so
    every forked child of this process gets new lock objects (same files, same exclusion)."""
    _renew_store_locks()
    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=_renew_store_locks)
        _FORK_HOOK.append(True)


_MANAGERS: list[Any] = []  # the runs' manager processes, in start order


def managers_since() -> int:
    """A mark taken when a job starts: `dead_manager` looks at the managers started after it.
    Those of earlier jobs that ended are let go."""
    for process in list(_MANAGERS):
        try:
            ended = process.exitcode is not None
        except (OSError, EOFError, ValueError):
            ended = True
        if ended:
            _MANAGERS.remove(process)
            try:
                process.close()
            except ValueError:
                pass
    return len(_MANAGERS)


def dead_manager(since: int) -> str | None:
    """How a manager started after mark `since` died (killed, or a non-zero exit), if one did.
    promptflow's own manager ends with code 0 when its run is over."""
    for process in _MANAGERS[since:]:
        try:
            code = process.exitcode
        except (OSError, EOFError, ValueError):  # its sentinel closed: it was seen already
            continue
        if code is None or code == 0:
            continue
        from genaiops.execution.procs import how_it_ended

        return how_it_ended(code)
    return None


def use_forkserver() -> bool:
    from promptflow.executor import _process_manager  # pyright: ignore[reportMissingTypeStubs, reportPrivateUsage]

    manager_class = getattr(_process_manager, "ForkProcessManager", None)
    target = getattr(_process_manager, "create_spawned_fork_process_manager", None)
    if manager_class is None or target is None:
        return False

    def start_processes(self: Any) -> None:
        process = _forkserver_context().Process(
            target=_run_manager,
            args=(dict(os.environ), target, self._log_context_initialization_func,
                  self._current_operation_context, self._control_signal_queue,
                  self._flow_create_kwargs),
            kwargs=self._kwargs)
        process.start()
        # only the crash watch polls it (`dead_manager`): multiprocessing's own bookkeeping would
        # read its exit status from another thread
        children: set[Any] = cast(Any, multiprocessing).process._children  # not in typeshed
        children.discard(process)
        _MANAGERS.append(process)
        self._spawned_fork_process_manager_pid = process.pid

    setattr(manager_class, "start_processes", start_processes)  # noqa: B010 - promptflow's class
    return True


def light_tracing() -> bool:
    """Promptflow's tracing in a batch run (on for the token counts per node) without serializing
    inputs, outputs and prompts into spans no tracer provider records: ~40% of a judged line's CPU
    in `monitor` (README, B11). The serving image's configuration of it, with the run's traces kept."""
    from genaiops.engines.promptflow.genaiops_pf_serve import lighten_promptflow_tracing

    lighten_promptflow_tracing(capture=True, run_traces=True)
    return True


class _WithoutApiCalls:
    """A line process's output queue, carrying each run info (node, flow, and both again in the
    line result) without its `api_calls`: the full trace of every call, prompts, messages and raw
    responses included, ~90% of a run info's size. The copies lose it, not the line process's own
    objects, which still compute the token counts from it. Nothing genaiops reads needs it: token
    counts travel in `system_metrics`, so the parent no longer unpickles, serializes twice and
    writes it for each node and line (~40% of the batch parent's CPU a judged line in `monitor`)."""

    def __init__(self, queue: Any):
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def put(self, item: Any, *args: Any, **kwargs: Any) -> Any:
        return self._queue.put(_without_api_calls(item), *args, **kwargs)


def _without_api_calls(item: Any) -> Any:
    import copy

    if getattr(item, "api_calls", None):
        light = copy.copy(item)
        light.api_calls = None
        return light
    if hasattr(item, "node_run_infos") and hasattr(item, "run_info"):  # a LineResult
        light = copy.copy(item)
        light.run_info = _without_api_calls(item.run_info)
        node_run_infos: dict[str, Any] = item.node_run_infos or {}
        light.node_run_infos = {name: _without_api_calls(info) for name, info in node_run_infos.items()}
        return light
    return item


def light_line_results() -> bool:
    """Line processes send their run infos without `api_calls` (`_WithoutApiCalls`)."""
    from promptflow.executor import (  # pyright: ignore[reportMissingTypeStubs]
        _line_execution_process_pool as pool,  # pyright: ignore[reportPrivateUsage]
    )

    serve_lines: Any = getattr(pool, "_exec_line_for_queue", None)
    if serve_lines is None or getattr(serve_lines, "genaiops_light", False):
        return serve_lines is not None

    def light_serve_lines(executor_creation_func: Any, input_queue: Any, output_queue: Any, *args: Any) -> Any:
        return serve_lines(executor_creation_func, input_queue, _WithoutApiCalls(output_queue), *args)

    light_serve_lines.genaiops_light = True  # pyright: ignore[reportFunctionMemberAccess]
    setattr(pool, "_exec_line_for_queue", light_serve_lines)  # noqa: B010 - promptflow's module
    return True


def install() -> dict[str, Any]:
    """The patches; says which applied (a promptflow of another shape keeps its own behaviour)."""
    fresh_store_locks()
    return {"forkserver": use_forkserver(), "short_polls": shorten_polls(), "light_tracing": light_tracing(),
            "light_line_results": light_line_results()}
