"""`genaiops engine list|setup`: the flow engines, where they run and whether they are ready."""

from __future__ import annotations

import argparse

from genaiops.cli.options import add_command, add_command_group
from genaiops.errors import EXIT_FAILED, EXIT_OK


def add_engine_parser(commands) -> None:
    actions = add_command_group(
        commands, "engine", "Flow engines: list | setup",
        "The engines a use case can name in `engine:` (promptflow, agent_framework, python, and "
        "any named in GENAIOPS_ENGINES or installed), where each runs and whether it is ready.",
        ["list", "setup"])
    add_command(actions, "list", cmd_engine_list)
    add_command(actions, "setup", cmd_engine_setup)


def _engines() -> tuple[str, ...]:
    from genaiops.engines import engine_names

    return engine_names()


def cmd_engine_list(args: argparse.Namespace) -> int:
    """Show each engine's interpreter, versions and readiness.

    agent_framework runs in an environment of its own (its packages conflict with promptflow's);
    `genaiops engine setup agent_framework` makes it. Exit 1 when an engine is not ready.
    """
    from genaiops.cli.render import emit_json, out, table
    from genaiops.engines import open_engine

    engines = [open_engine(name) for name in _engines()]
    if args.needing_setup:
        for engine in engines:
            if engine.needs_setup:
                out(engine.name)
        return EXIT_OK
    states = [{**engine.environment(), "needs_setup": engine.needs_setup,
               "backends": list(engine.backends), "kinds": sorted(engine.scaffold_kinds())}
              for engine in engines]
    ok = all(state["ready"] for state in states)
    if args.json:
        emit_json({"ok": ok, "engines": states})
    else:
        out(table([{"engine": s["engine"], "ready": "yes" if s["ready"] else "NO",
                    "versions": ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items()),
                    "python": s["python"]} for s in states]))
        for state in states:
            if not state["ready"]:
                out(f"{state['engine']}: {state['problem']}; fix: genaiops engine setup "
                    f"{state['engine']}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_engine_setup(args: argparse.Namespace) -> int:
    """Make an engine's environment ready (idempotent).

    For agent_framework: a virtual environment with agent-framework-core, agent-framework-openai,
    starlette and uvicorn at pinned versions, beside the orchestrator's (or
    $GENAIOPS_AGENT_FRAMEWORK_PYTHON). promptflow needs nothing: it is installed with genaiops.
    """
    from genaiops.cli.render import emit_json, err, out
    from genaiops.engines import open_engine

    progress = None if args.json else (lambda message: err(message))
    state = open_engine(args.name).setup(force=args.force, progress=progress)
    if args.json:
        emit_json({"ok": state["ready"], **state})
    else:
        versions = ", ".join(f"{k} {v}" for k, v in (state.get("versions") or {}).items())
        out(f"{state['engine']}: {state['action']}, {'ready' if state['ready'] else 'NOT ready'} "
            f"({state['python']}; {versions})")
    return EXIT_OK if state["ready"] else EXIT_FAILED
