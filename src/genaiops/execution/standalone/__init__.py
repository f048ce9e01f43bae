"""Modules that also run where genaiops is not importable (an engine's own interpreter, e.g. the
Agent Framework batch worker): standard library only, each importable both as
`genaiops.execution.standalone.<name>` and, with `STANDALONE_DIR` on the path, as `<name>`.

    genaiops_reaper   a worker's own containment: subreaper, parent-death signal, killing its tree
"""

from pathlib import Path

STANDALONE_DIR = Path(__file__).resolve().parent
