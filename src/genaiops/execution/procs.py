"""Process containment: nothing a flow starts outlives the command that ran it.

A flow's code can start processes of its own, in a new session (`start_new_session=True`) or
double-forked, which a process group does not hold. So every worker genaiops starts:

- is started with an owner tag in its environment (`OWNER_ENV`: `g<host>-<pid>.<id>`, see
  `workspace.sweep.owner_tag`), which every process it starts inherits;
- makes itself a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`), so whatever its descendants
  start stays in its process tree when their parents exit (a double fork cannot reach init);
- asks for a signal when the orchestrator dies (`PR_SET_PDEATHSIG`), and then ends its tree.

The last two happen inside the worker, in whichever interpreter runs it: `contain_self` and
`kill_descendants` of `standalone.genaiops_reaper` (standard library only).

Ending a worker (`end`) stops it (SIGSTOP: it can start nothing more, and stays the reaper of
its tree), kills every descendant and every process carrying its tag until none is left, then
kills and reaps the worker. The next command kills what a killed orchestrator left behind
(`sweep_abandoned`: tags of this machine whose orchestrator is gone). Linux only: elsewhere
`prctl` is a no-op and the process-group stop is what holds.

The parent-death signal is sent when the *thread* that started the child ends, so workers are
started by one thread that lives as long as this process (`spawn`).
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from genaiops.execution.standalone.genaiops_reaper import PARENT_ENV

OWNER_ENV = "GENAIOPS_PROCESS_OWNER"
_KILL_ROUNDS = 100
_counter = itertools.count(1)


# -- reading /proc ---------------------------------------------------------------------------

def _table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int, table: dict | None = None) -> set[int]:
    table = _table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def owner_of(pid: int) -> str | None:
    """The owner tag in a process's environment (None: none, or not ours to read)."""
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = f"\0{OWNER_ENV}=".encode()
    data = b"\0" + data
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\0", start)
    return data[start:end if end >= 0 else None].decode(errors="replace")


def tagged(prefix: str, table: dict | None = None) -> set[int]:
    """Processes whose owner tag is `prefix` or starts with `prefix.`."""
    table = _table() if table is None else table
    found = set()
    for pid in table:
        tag = owner_of(pid)
        if tag and (tag == prefix or tag.startswith(prefix + ".")):
            found.add(pid)
    return found


def stopped(root: int) -> list[int]:
    """Processes of `root`'s tree (itself included) stopped by a signal (SIGSTOP, SIGTSTP)."""
    table = _table()
    return sorted(pid for pid in descendants(root, table) | {root}
                  if table.get(pid, (0, ""))[1] == "T")


class StopWatch:
    """Notices a process tree that stays stopped (SIGSTOP): `check()` (cheap to call often) says
    which process once one has been stopped for `grace` seconds."""

    CHECK_SECONDS = 1.0

    def __init__(self, root: int, grace: float = 2.0):
        self.root, self.grace = root, grace
        self._next = 0.0
        self._since: float | None = None

    def check(self) -> str | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.CHECK_SECONDS
        halted = stopped(self.root)
        self._since = (self._since or now) if halted else None
        if halted and now - self._since >= self.grace:
            return f"process {halted[0]} of the run was stopped (SIGSTOP) for {self.grace:g} s"
        return None


def kill_all(root: int | None = None, tag: str | None = None) -> int:
    """SIGKILL `root`'s descendants (not `root`) and the processes tagged `tag`, again and again
    until none is left (one may fork between a scan and its kill: its child then appears in the
    next scan). Returns how many were killed."""
    killed: set[int] = set()
    me = os.getpid()
    for _ in range(_KILL_ROUNDS):
        table = _table()
        targets = set()
        if root is not None:
            targets |= descendants(root, table)
        if tag:
            targets |= tagged(tag, table)
        targets = {pid for pid in targets if pid not in (me, root) and table[pid][1] not in "ZX"}
        if not targets:
            break
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return len(killed)


# -- in the orchestrator ---------------------------------------------------------------------

def new_tag() -> str:
    """An owner tag for one worker of this process."""
    from genaiops.workspace.sweep import owner_tag

    return f"{owner_tag()}.{next(_counter)}"


def child_env(tag: str) -> dict[str, str]:
    """Environment entries a worker needs for `contain_self`."""
    return {OWNER_ENV: tag, PARENT_ENV: str(os.getpid())}


class _Spawner:
    """One thread that outlives every worker it starts: see the module docstring."""

    def __init__(self):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            args, kwargs, reply = self.requests.get()
            try:
                reply.put((subprocess.Popen(*args, **kwargs), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                reply.put((None, exc))

    def spawn(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="genaiops-spawner", daemon=True)
                self.thread.start()
        reply: queue.SimpleQueue = queue.SimpleQueue()
        self.requests.put((args, kwargs, reply))
        process, error = reply.get()
        if error is not None:
            raise error
        return process


_SPAWNER = _Spawner()


def spawn(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(*args, **kwargs)`, started from the spawner thread."""
    return _SPAWNER.spawn(*args, **kwargs)


def end(process: subprocess.Popen[bytes], tag: str | None) -> int:
    """End a worker started with `child_env(tag)` and everything it or its descendants started;
    reap it. Returns its exit code."""
    if process.returncode is None:
        try:
            os.kill(process.pid, signal.SIGSTOP)  # unreaped: the pid is still the worker's
        except ProcessLookupError:
            pass
        kill_all(process.pid, tag)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # a new session: its group is its pid
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.kill()
        except ProcessLookupError:
            pass
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        code = -signal.SIGKILL
    if tag:
        kill_all(None, tag)  # what left the tree before the worker died (its reaper gone)
    return code


def how_it_ended(code: int) -> str:
    """A process's exit code in words: "exited with code 3", "was killed by SIGKILL"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def sweep_abandoned() -> int:
    """Kill the processes left by workers of an orchestrator of this machine that is gone
    (SIGKILLed, a lost CI agent); how many."""
    from genaiops.workspace.sweep import abandoned

    if not sys.platform.startswith("linux"):
        return 0
    victims = []
    for pid in _table():
        tag = owner_of(pid)
        if tag and pid != os.getpid() and abandoned(tag):
            victims.append(pid)
    # a worker still holds its tree (stopped, say, when its orchestrator died): stop it, kill what
    # it reaps, then kill it
    _signal_each(victims, signal.SIGSTOP)
    for pid in victims:
        kill_all(pid)
    _signal_each(victims, signal.SIGKILL)
    return len(victims)


def _signal_each(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def sweep_machine() -> tuple[int, int]:
    """What killed commands of this machine left outside the state folder: their workers'
    processes (`sweep_abandoned`) and their temp folders (`$TMPDIR/genaiops-*-<owner tag>-*`).
    Returns (processes killed, folders removed)."""
    import tempfile

    from genaiops.workspace.files import socket_safe_temp_base
    from genaiops.workspace.sweep import sweep

    bases = {Path(tempfile.gettempdir()), socket_safe_temp_base()}  # the second: see that function
    return sweep_abandoned(), sum(len(sweep(base, "genaiops-*")) for base in sorted(bases))

