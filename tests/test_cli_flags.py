"""Each command's own flags come from `cli/flags.yaml`: the file builds every parser, a mistake in it
is named (file, command, flag) when the parser is built, and the converters it names still turn a
bad value into a usage error (exit 2)."""

from __future__ import annotations

import argparse
from fnmatch import fnmatch

import pytest

from genaiops.cli import build_parser, main, options
from genaiops.cli.args import CONVERTERS
from genaiops.cli.options import FLAGS_FILE, FlagSpecError, load_flags
from genaiops.cli.report import PLATFORMS
from genaiops.simulator import DEFAULT_PORT


def leaf_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{"run experiment": its parser, ...}: every parser that runs a command, by its path."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "func" in sub._defaults:
                    found[sub.prog.split(" ", 1)[1]] = sub
                found.update(leaf_parsers(sub))
    return found


def test_every_flag_in_flags_yaml_builds_with_its_help_and_type():
    spec = load_flags(FLAGS_FILE)
    parsers = leaf_parsers(build_parser())
    assert set(spec) <= set(parsers) and {"compare", "report comment", "simulator"} <= set(spec)
    checked = 0
    for command, own in spec.items():
        actions = {name: action for action in parsers[command]._actions
                   for name in (action.option_strings or [action.dest])}
        for flag, keywords in own.items():
            action = actions[flag]
            assert keywords["help"].strip() and action.help == keywords["help"], (command, flag)
            if "type" in keywords:
                assert action.type is CONVERTERS[keywords["type"]], (command, flag)
            checked += 1
    assert checked > 60  # every command's flags, not a handful


def test_constants_come_from_code_and_help_shows_them():
    parsers = leaf_parsers(build_parser())
    platform = next(a for a in parsers["report comment"]._actions if "--platform" in a.option_strings)
    assert tuple(platform.choices) == PLATFORMS
    assert parsers["simulator"].get_default("port") == DEFAULT_PORT
    assert f"(default {DEFAULT_PORT}; 0 = any free port)" in parsers["simulator"].format_help()


@pytest.mark.parametrize(("flag_yaml", "says"), [
    ("    hlep: what it does\n    help: x\n", "unknown key 'hlep'"),
    ("    type: positive_number\n    help: x\n", "unknown type 'positive_number'"),
    ("    type: int\n", "no `help:`"),
])
def test_a_mistake_in_the_flags_file_is_named_with_command_and_flag(tmp_path, flag_yaml, says):
    path = tmp_path / "flags.yaml"
    path.write_text("compare:\n  --margin:\n" + flag_yaml, encoding="utf-8")
    with pytest.raises(FlagSpecError) as info:
        load_flags(path)
    message = str(info.value)
    assert str(path) in message and "flags.yaml" in message
    assert "'compare'" in message and "'--margin'" in message and says in message


@pytest.mark.parametrize(("extra", "says"), [
    ("report coment:\n  --pr:\n    help: x\n", "command 'report coment' is built by no module"),
    # a constant the module gives (`values=`) must not be written here as well
    ("", "'--platform': 'choices' comes from code"),
])
def test_the_flags_file_and_the_modules_must_agree(tmp_path, monkeypatch, extra, says):
    text = FLAGS_FILE.read_text(encoding="utf-8") + extra
    if not extra:
        text = text.replace("  --platform:\n", "  --platform:\n    choices: [github]\n", 1)
    path = tmp_path / "flags.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(options, "FLAGS_FILE", path)
    with pytest.raises(FlagSpecError) as info:
        build_parser()
    assert str(path) in str(info.value) and says in str(info.value)


def test_a_damaged_flags_file_is_a_located_error_without_a_traceback(tmp_path, monkeypatch, capsys):
    path = tmp_path / "flags.yaml"
    path.write_text("compare:\n  --margin: [unclosed\n", encoding="utf-8")
    monkeypatch.setattr(options, "FLAGS_FILE", path)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: cannot read the commands' flags") and "Traceback" not in err
    assert "fix: restore genaiops' cli/flags.yaml" in err


@pytest.mark.parametrize(("argv", "says"), [
    (["compare", "--baseline", "a", "--candidate", "b", "--confidence", "2"],
     "argument --confidence: '2' must be between 0 and 1"),
    (["simulator", "--rpm", "0"], "argument --rpm: '0' must be at least 1"),
    (["run", "experiment", "-u", "x", "--budget", "nan"], "argument --budget: 'nan' must be a finite"),
    (["monitor", "-u", "x", "-e", "local", "--since", "0h"], "argument --since: '0h' must be a duration"),
    (["report", "comment", "-u", "x", "--platform", "gitlab"], "argument --platform: invalid choice"),
    (["registry", "show", "tickets", "--version", "two"], "argument --version: invalid int value"),
])
def test_a_bad_value_exits_2_with_the_converters_message(capsys, argv, says):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert says in capsys.readouterr().err


def test_the_flags_file_is_shipped_as_package_data(repo_root):
    """Without it an installed (non-editable) genaiops could build no parser at all."""
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["genaiops"]
    relative = FLAGS_FILE.relative_to(repo_root / "src" / "genaiops").as_posix()
    assert any(fnmatch(relative, pattern) for pattern in patterns), patterns  # `*` spans folders
