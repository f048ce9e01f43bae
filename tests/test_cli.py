"""CLI behaviour that is not a phase: fast start-up, help, usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genaiops.cli import build_parser, main


def test_help_does_not_import_promptflow_or_azure():
    code = ("import sys; import genaiops.cli as c; c.build_parser().format_help(); "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('promptflow', 'azure', 'openai', 'docker')]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_lists_phases_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("init", "experiment", "evaluate", "deploy", "Exit codes", "SIMULATOR"):
        assert word in text


def test_unknown_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "fix: see `genaiops --help`" in capsys.readouterr().err


def test_no_command_prints_help_and_exit_2(capsys):
    assert main([]) == 2
    assert "usage: genaiops" in capsys.readouterr().out


def test_every_subcommand_has_help():
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name, sub in actions[0].choices.items():
        assert sub.format_help().strip(), name


@pytest.mark.parametrize("kind", ["dag", "flex", "prompty"])
def test_new_then_validate_through_the_cli(tmp_path, kind, capsys):
    for folder in ("flows", "configs", "datasets"):
        (tmp_path / folder).mkdir()
    assert main(["--repo", str(tmp_path), "new", "reviews", "--kind", kind]) == 0
    assert "next: genaiops validate --use-case reviews" in capsys.readouterr().out
    assert main(["--repo", str(tmp_path), "validate", "--use-case", "reviews"]) == 0
    assert main(["--repo", str(tmp_path), "validate", "--use-case", "reviews", "--env", "pr"]) == 0
    assert main(["--repo", str(tmp_path), "new", "reviews", "--kind", kind]) == 2  # never overwrites
    assert "already exist" in capsys.readouterr().err
