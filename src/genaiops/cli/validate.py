"""`genaiops validate`: every problem of one use case (or all), with file, line, field and fix."""

from __future__ import annotations

import argparse

from genaiops.cli.options import OPTIONAL, OVERLAY, add_command, repo_root
from genaiops.errors import EXIT_OK, EXIT_USAGE, ConfigError, GenaiopsError, Problem


def add_validate_parser(subparsers) -> None:
    add_command(subparsers, "validate", cmd_validate, use_case=OPTIONAL, env=OVERLAY)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check configs, overlays, flows and datasets.

    Validates one use case (default: all) and reports every problem with file, line, field and
    fix: the base config and, without --env, every experiment.<env>.yaml overlay; datasets are
    read whole (an overlay whose only problem is a variable not set here is skipped, named with
    what it reads). With --env and no --use-case, the use cases that declare that environment.
    Exit 2 on any problem.
    """
    from genaiops.cli.render import emit_json, out
    from genaiops.config import list_use_cases
    from genaiops.config.environments import (
        declared_environments,
        overlay_environments,
        require_declared,
    )

    root = repo_root(args)
    use_cases = [args.use_case] if args.use_case else list_use_cases(root)
    if not use_cases:
        raise GenaiopsError("no use cases under configs/", hint="create one: genaiops new <name>")
    if args.env and not args.use_case:
        declaring = [u for u in use_cases if args.env in declared_environments(root, u)]
        for use_case in declaring or use_cases[:1]:  # none: the first one says what exists
            require_declared(root, use_case, args.env)
        use_cases = declaring
    results = [_check(root, use_case, env, implicit=not args.env) for use_case in use_cases
               for env in ([args.env] if args.env else [None, *overlay_environments(root, use_case)])]
    ok = all(result["ok"] for result in results)
    if args.json:
        emit_json({"ok": ok, "env": args.env, "use_cases": results})
        return EXIT_OK if ok else EXIT_USAGE
    for result in results:
        name = result["use_case"] + (f" -e {result['env']}" if result["env"] else "")
        if result.get("needs"):
            out(f"skipped  {name}  (reads {', '.join(result['needs'])}, not set here: "
                f"`genaiops validate -e {result['env']}` where they are)")
        elif result["ok"]:
            out(f"ok       {name}  ({', '.join(result['files'])})")
        else:
            out(f"INVALID  {name}")
            for problem in result["problems"]:
                out(f"  - {Problem(**problem).render()}")
    return EXIT_OK if ok else EXIT_USAGE


def _check(root, use_case: str, env: str | None, *, implicit: bool = False) -> dict:
    """One use case's verdict: the files it is made of, or every problem they have. An overlay
    checked only because no --env was given, whose sole problems are variables not set on this
    machine (an Azure environment's, set in its pipeline), is skipped and says what it needs;
    `validate -e <env>` checks it in full."""
    from genaiops.config import load_experiment
    from genaiops.config.deployment import load_deployment
    from genaiops.config.envvars import unset_variable
    from genaiops.workspace.repo import ConfigsLayout

    problems, files = [], []
    try:
        files += load_experiment(root, use_case, env).files
    except ConfigError as exc:
        problems += exc.problems
    # deployment.yaml too (smoke request, image, targets); without -e its environments may read
    # variables set only where they deploy
    if ConfigsLayout(root).deployment(use_case).is_file():
        try:
            files += load_deployment(root, use_case, env, environments_unset_ok=implicit).files
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        unset = [unset_variable(p) for p in problems]
        if implicit and env and all(unset):
            return {"use_case": use_case, "env": env, "ok": True, "needs": sorted(set(unset))}
        return {"use_case": use_case, "env": env, "ok": False,
                "problems": [p.as_dict() for p in problems]}
    return {"use_case": use_case, "env": env, "ok": True,
            "files": [str(f.relative_to(root)) for f in files]}
