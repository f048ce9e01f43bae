"""A worker's own containment, called inside every batch worker genaiops starts (promptflow's in
genaiops' interpreter, the Agent Framework's in the engine's): the orchestrator's side, and why,
is `genaiops.execution.procs`. Standard library only (see `genaiops.execution.standalone`).

The worker makes itself a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): processes it starts,
in a session of their own or double-forked, stay in its tree, and `kill_descendants` ends them
before it exits. The orchestrator's death sends it `PR_SET_PDEATHSIG`'s signal.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PARENT_ENV = "GENAIOPS_PARENT_PID"  # the orchestrator's pid (`procs.child_env`)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def contain_self(on_parent_death: int = signal.SIGTERM) -> bool:
    """Called first thing in a worker, after its handler for `on_parent_death` is set: reaper of
    its own tree, `on_parent_death` sent to it when the orchestrator ends (at once, if it already
    has). False where the kernel cannot do this (not Linux): then the caller watches the parent."""
    if not (_prctl(_PR_SET_CHILD_SUBREAPER, 1) and _prctl(_PR_SET_PDEATHSIG, int(on_parent_death))):
        return False
    expected = os.environ.get(PARENT_ENV)
    if expected and os.getppid() != int(expected):  # the orchestrator died before prctl
        os.kill(os.getpid(), on_parent_death)
    return True


def _children() -> dict[int, list[tuple[int, str]]]:
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[0]))
    return children


def kill_descendants() -> None:
    """SIGKILL every descendant of this process until none is left."""
    if not Path("/proc/self/stat").exists():
        return
    for _ in range(100):
        children, found, todo = _children(), [], [os.getpid()]
        while todo:
            for pid, state in children.get(todo.pop(), ()):
                todo.append(pid)
                if state not in "ZX":
                    found.append(pid)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
