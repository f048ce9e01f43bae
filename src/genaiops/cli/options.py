"""The flags several commands share, declared once; each command's own flags, read from
`flags.yaml`; and the repository a command names.

Each command gets its shared flags as one argparse parent parser (`parents=shared(...)`), so
`--use-case/-u`, `--env/-e`, `--json` and `--no-progress` mean the same everywhere. `--repo` is on
the top-level parser and on every command; below the top level it defaults to SUPPRESS so that
`genaiops --repo X cmd` is not overwritten by the command's own (absent) `--repo`. A command's own
flags are data, not code: `add_command` adds them from `flags.yaml` (see its header), after the
shared ones.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
from pathlib import Path

from genaiops.registry import BACKENDS

OPTIONAL, REQUIRED = "optional", "required"
OVERLAY, DEPLOYMENT = "overlay", "deployment"
FLAGS_FILE = Path(__file__).with_name("flags.yaml")
_FLAG_KEYS = ("help", "type", "default", "required", "metavar", "choices", "action", "nargs", "dest",
              "aliases")
_declared: set[str] = set()  # the commands `add_command` has built in this process

_ENV_FLAGS = {
    OVERLAY: {"default": None,
              "help": "environment overlay: configs/<use_case>/experiment.<env>.yaml replaces the "
                      "blocks it names"},
    DEPLOYMENT: {"required": True,
                 "help": "environment under `environments:` in configs/<use_case>/deployment.yaml"},
}


def add_repo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="flow repository root (default: $GENAIOPS_REPO, else the nearest "
                             "folder above with configs/ and flows/)")


def shared(*, use_case: str | None = None, env: str | None = None, json: bool = True,
           progress: bool = False, llm: bool = False) -> list[argparse.ArgumentParser]:
    """The `parents=` of one command: `--repo` always, the other shared flags where they apply."""
    parent = argparse.ArgumentParser(add_help=False)
    add_repo_flag(parent)
    if use_case:
        parent.add_argument("--use-case", "-u", required=use_case == REQUIRED, metavar="NAME",
                            help="use case folder under configs/ (e.g. classification)")
    if env:
        parent.add_argument("--env", "-e", metavar="ENV", **_ENV_FLAGS[env])
    if json:
        parent.add_argument("--json", action="store_true",
                            help="print the result (or the error) as JSON for machines")
    if progress:
        parent.add_argument("--no-progress", action="store_true",
                            help="no progress output on stderr")
    if llm:
        parent.add_argument("--llm", choices=("live", "record", "replay"), default=None,
                            help="LLM answers: live (call the endpoints), record (call them and "
                                 "keep the answers in cassettes/<use_case>), replay (answer from "
                                 "the cassette, no endpoint or key; a miss fails with exit 2); "
                                 "default: $GENAIOPS_LLM, else `llm.mode` of the config, else live")
    return [parent]


class _DeprecatedAlias(argparse.Action):
    """A hidden old spelling of a flag: still works, and says which flag replaced it."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None):
        from genaiops.cli.render import err

        err(f"warning: {option_string} is deprecated, use {self.replacement}")
        setattr(namespace, self.dest, values)


def add_registry_flag(parser: argparse.ArgumentParser, *, default: str,
                      deprecated_alias: str | None = None) -> None:
    """`--registry local|azureml`, the same flag for `run init` and `registry list|show`."""
    parser.add_argument("--registry", choices=BACKENDS, default=None,
                        help=f"registry backend (default: {default})")
    if deprecated_alias:
        parser.add_argument(deprecated_alias, dest="registry", choices=BACKENDS,
                            action=_DeprecatedAlias, replacement="--registry",
                            help=argparse.SUPPRESS)


def add_command_group(subparsers, name: str, summary: str, description: str, commands: list[str]):
    """A command with sub-commands (`registry list|show`, `audit init|verify`); returns the
    sub-parsers to `add_command` them to."""
    parser = subparsers.add_parser(name, help=summary, description=description)
    add_repo_flag(parser)
    return parser.add_subparsers(dest=f"{name}_command", metavar="{" + ",".join(commands) + "}",
                                 required=True)


def add_command(subparsers, name: str, func, *, values: dict[str, dict] | None = None,
                **flags) -> argparse.ArgumentParser:
    """One command: its parser with the shared `flags` (see `shared`), then its own from
    `flags.yaml`, and the function it runs. `values` gives the keywords a Python constant holds
    (`{"--platform": {"choices": PLATFORMS}}`), so that the constant has one home.

    The function's docstring is written for users and is the command's only help text: its first
    line is the one-liner of the parent's `--help`, all of it the description of its own.
    """
    doc = inspect.getdoc(func)
    summary = doc.splitlines()[0].rstrip(".")
    parser = subparsers.add_parser(name, parents=shared(**flags), help=summary,
                                   description=" ".join(doc.split()))
    _add_own_flags(parser, values or {})
    parser.set_defaults(func=func)
    return parser


class FlagSpecError(Exception):
    """`flags.yaml` and the command modules disagree: a developer's error, raised while the parser
    is built so that no command runs with a half-declared command line."""


@functools.cache
def load_flags(path: Path) -> dict[str, dict[str, dict]]:
    """`{command: {flag: argparse keywords}}` from a flags file, checked whole (known keywords and
    types, help on every flag). The real one (`FLAGS_FILE`) is read once per process."""
    import yaml

    from genaiops.cli.args import CONVERTERS

    try:
        with open(path, encoding="utf-8") as handle:
            spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FlagSpecError(f"{path}: cannot read the commands' flags: {exc}") from None
    if not isinstance(spec, dict):
        raise FlagSpecError(f"{path}: must map each command to its flags")
    commands = {}
    for command, own in spec.items():
        if not isinstance(own or {}, dict):
            raise FlagSpecError(f"{path}: command {command!r}: must map each flag to its keywords")
        for flag, keywords in (own or {}).items():
            where = f"{path}: command {command!r}, flag {flag!r}"
            if not isinstance(keywords, dict):
                raise FlagSpecError(f"{where}: must map argparse keywords (help, type, ...) to values")
            unknown = [key for key in keywords if key not in _FLAG_KEYS]
            if unknown:
                raise FlagSpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_FLAG_KEYS)})")
            if not isinstance(keywords.get("help"), str) or not keywords["help"].strip():
                raise FlagSpecError(f"{where}: no `help:` (every flag says what it does)")
            if keywords.get("type", "str") not in CONVERTERS:
                raise FlagSpecError(f"{where}: unknown type {keywords['type']!r} "
                                    f"(known: {', '.join(CONVERTERS)}; add one to cli/args.py)")
        commands[command] = own or {}
    return commands


def _add_own_flags(parser: argparse.ArgumentParser, values: dict[str, dict]) -> None:
    """The command's entry of `flags.yaml`, in its order, with `values` filled in from code."""
    from genaiops.cli.args import CONVERTERS

    command = parser.prog.split(" ", 1)[1]  # "genaiops run experiment" -> "run experiment"
    _declared.add(command)
    own = load_flags(FLAGS_FILE).get(command, {})
    undeclared = sorted(values.keys() - own.keys())
    if undeclared:
        raise FlagSpecError(f"{FLAGS_FILE}: command {command!r} has no flag {undeclared[0]!r}, but its "
                            f"module gives values for it; declare it there")
    for flag, keywords in own.items():
        given = values.get(flag, {})
        twice = sorted(given.keys() & keywords.keys())
        if twice:
            raise FlagSpecError(f"{FLAGS_FILE}: command {command!r}, flag {flag!r}: {twice[0]!r} comes "
                                f"from code (`add_command(values=...)`); remove it here")
        kwargs = {**copy.deepcopy(keywords), **given}
        aliases = kwargs.pop("aliases", [])
        if "type" in kwargs:
            kwargs["type"] = CONVERTERS[kwargs["type"]]
        try:
            parser.add_argument(flag, *aliases, **kwargs)
        except (TypeError, ValueError, argparse.ArgumentError) as exc:
            raise FlagSpecError(f"{FLAGS_FILE}: command {command!r}, flag {flag!r}: {exc}") from None


def check_flags_declared() -> None:
    """Every command `flags.yaml` names was built (a renamed command leaves no stray entry)."""
    stray = sorted(load_flags(FLAGS_FILE).keys() - _declared)
    if stray:
        raise FlagSpecError(f"{FLAGS_FILE}: command {stray[0]!r} is built by no module "
                            f"(`add_command`); rename or remove its entry")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress lines go to stderr unless --no-progress, or --json wants a quiet terminal."""
    return not (getattr(args, "no_progress", False) or getattr(args, "json", False))


def project(args: argparse.Namespace):
    """The command's one `Project`: the repository named by `--repo` (before or after the
    command), else found from here. Built on first use and kept on `args`, so every part of the
    command sees the same repository, workspace and registries."""
    from genaiops.project import Project

    built = getattr(args, "_project", None)
    if built is None:
        built = Project.find(getattr(args, "repo", None))
        args._project = built
    return built


def repo_root(args: argparse.Namespace) -> Path:
    """The root of the command's project (`project(args).root`)."""
    return project(args).root


def phase_context(args: argparse.Namespace):
    """The phase context (config, project, engine) of --repo/--use-case/--env; the config's
    secrets are registered for redaction before anything is printed."""
    from genaiops.phases.context import PhaseContext

    return PhaseContext.open(project(args), args.use_case, args.env, show_progress=show_progress(args),
                             llm=llm_mode(args))


def llm_mode(args: argparse.Namespace) -> str | None:
    """`--llm`, else $GENAIOPS_LLM (a pipeline stage's default, e.g. replay for pull requests),
    else None: the config's `llm.mode`."""
    import os

    from genaiops.errors import UsageError

    mode = getattr(args, "llm", None) or os.environ.get("GENAIOPS_LLM") or None
    if mode is not None and mode not in ("live", "record", "replay"):
        raise UsageError(f"GENAIOPS_LLM must be live, record or replay, not {mode!r}")
    return mode if hasattr(args, "llm") else None
