"""CLI behaviour that is not a phase: fast start-up, help, shared flags, usage errors, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from genaiops.cli import build_parser, main
from genaiops.project import Project
from genaiops.registry import AssetSpec
from genaiops.secrets import MASK, REDACTOR

DIGEST = "sha256:" + "0" * 64
# Every command with the fewest arguments it parses with (argparse-wise; the use case may not exist).
COMMANDS = {
    "new": ["new", "other"],
    "validate": ["validate"],
    "run init": ["run", "init", "-u", "nope"],
    "run experiment": ["run", "experiment", "-u", "nope"],
    "run evaluate": ["run", "evaluate", "-u", "nope"],
    "run build": ["run", "build", "-u", "nope", "-e", "dev", "--summary", "summary.json"],
    "run deploy": ["run", "deploy", "-u", "nope", "-e", "dev"],
    "run verdict": ["run", "verdict", "-u", "nope"],
    "approve": ["approve", "-u", "nope", "-e", "prod", "--artifact", DIGEST, "--by", "me"],
    "reject": ["reject", "-u", "nope", "-e", "prod", "--artifact", DIGEST, "--by", "me"],
    "promote": ["promote", "-u", "nope", "-e", "prod", "--by", "me"],
    "rollback": ["rollback", "-u", "nope", "-e", "prod", "--by", "me"],
    "audit init": ["audit", "init"],
    "audit verify": ["audit", "verify"],
    "registry list": ["registry", "list"],
    "registry show": ["registry", "show", "tickets"],
    "simulator": ["simulator"],
    "compare": ["compare", "--baseline", "nope", "--candidate", "nope2"],
    "engine list": ["engine", "list"],
    "engine setup": ["engine", "setup", "promptflow"],
    "report comment": ["report", "comment", "-u", "nope"],
    "monitor": ["monitor", "-u", "nope", "-e", "local"],
    "feedback promote": ["feedback", "promote", "-u", "nope", "-e", "local"],
}
# The shared flags each command must have (and no others of them).
SHARED = {"--repo", "--use-case", "--env", "--json", "--no-progress"}
PHASE = {"--repo", "--use-case", "--env", "--json"}
EXPECTED_SHARED = {
    "new": {"--repo", "--json"},
    "validate": PHASE,
    "run init": PHASE | {"--no-progress"},
    "run experiment": PHASE | {"--no-progress"},
    "run evaluate": PHASE | {"--no-progress"},
    "run build": PHASE | {"--no-progress"},
    "run deploy": PHASE | {"--no-progress"},
    "run verdict": PHASE | {"--no-progress"},
    "approve": PHASE,
    "reject": PHASE,
    "promote": PHASE,
    "rollback": PHASE,
    "audit init": {"--repo", "--json"},
    "audit verify": {"--repo", "--json"},
    "registry list": {"--repo", "--json"},
    "registry show": {"--repo", "--json"},
    "simulator": {"--repo", "--use-case"},
    "compare": {"--repo", "--env", "--json", "--no-progress"},
    "engine list": {"--repo", "--json"},
    "engine setup": {"--repo", "--json"},
    "report comment": PHASE,
    "monitor": PHASE,
    "feedback promote": PHASE,
}


def leaf_parsers(parser: argparse.ArgumentParser, path: str = "") -> dict:
    """{"run init": its parser, ...}: every parser that runs a command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    found = {}
    for name, sub in subs[0].choices.items():
        found.update(leaf_parsers(sub, f"{path} {name}".strip()))
    return found


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with one scaffolded use case `demo`; its state in <repo>/.genaiops."""
    root = tmp_path / "repo"
    for folder in ("flows", "configs", "datasets"):
        (root / folder).mkdir(parents=True)
    monkeypatch.delenv("GENAIOPS_STATE_DIR", raising=False)
    monkeypatch.delenv("GENAIOPS_REPO", raising=False)
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(tmp_path / "trust"))  # `audit init` writes a key here
    monkeypatch.chdir(tmp_path)  # a lost --repo must not fall back to the repository we run in
    assert main(["--repo", str(root), "new", "demo"]) == 0
    return root


@pytest.fixture
def secret(monkeypatch) -> str:
    """A value the redactor knows for this test only."""
    monkeypatch.setattr(REDACTOR, "_values", set())
    monkeypatch.setattr(REDACTOR, "_pattern", None)
    value = "sk-cli-test-9f8e7d6c"
    REDACTOR.add(value)
    return value


def test_help_does_not_import_promptflow_or_azure():
    code = ("import sys, argparse; import genaiops.cli as c\n"
            "def walk(p):\n"
            "    p.format_help()\n"
            "    for a in p._actions:\n"
            "        if isinstance(a, argparse._SubParsersAction):\n"
            "            for s in a.choices.values(): walk(s)\n"
            "walk(c.build_parser())\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
            "               & {'promptflow', 'azure', 'openai', 'docker'})\n"
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


def test_the_command_table_covers_every_command():
    assert set(leaf_parsers(build_parser())) == set(COMMANDS) == set(EXPECTED_SHARED)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_described_and_documents_its_options(name):
    parser = leaf_parsers(build_parser())[name]
    assert parser.description and len(parser.description) > 40, f"{name} has no description"
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    visible = {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
    assert all(option in text for option in visible), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_flags_appear_where_they_should(name):
    parser = leaf_parsers(build_parser())[name]
    assert flags(parser) & SHARED == EXPECTED_SHARED[name]
    short = {s for a in parser._actions for s in a.option_strings if not s.startswith("--")}
    assert ("-u" in short) == ("--use-case" in EXPECTED_SHARED[name])
    assert ("-e" in short) == ("--env" in EXPECTED_SHARED[name])


def test_shared_flags_say_the_same_everywhere():
    helps: dict[str, set] = {}
    for parser in leaf_parsers(build_parser()).values():
        for action in parser._actions:
            if {"--repo", "--use-case", "--json", "--no-progress"} & set(action.option_strings):
                helps.setdefault(action.option_strings[0], set()).add(action.help)
    assert {flag: len(texts) for flag, texts in helps.items()} == {
        "--repo": 1, "--use-case": 1, "--json": 1, "--no-progress": 1}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unknown_flag_is_a_usage_error(name, capsys):
    code, _, err = run([*COMMANDS[name], "--no-such-flag"], capsys)
    assert code == 2
    assert "unrecognized arguments: --no-such-flag" in err and "fix: see `genaiops" in err


@pytest.mark.parametrize("name", sorted(n for n, f in EXPECTED_SHARED.items() if "--json" in f))
def test_every_json_command_prints_valid_json(name, repo, capsys):
    code, out, err = run(["--repo", str(repo), *COMMANDS[name], "--json"], capsys)
    payload = json.loads(out)  # a result, or the error as JSON: never a bare message
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code:
        assert payload["ok"] is False and payload["exit_code"] == code and payload["error"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_repo_flag_is_honoured_by_registry(where, repo, tmp_path, monkeypatch, capsys):
    Project.at(repo).registry("local").register(
        AssetSpec("demo", "dataset", repo / "datasets" / "demo" / "demo.jsonl"))
    elsewhere = tmp_path / "elsewhere"  # the repository of the current folder: nothing registered
    for folder in ("flows", "configs"):
        (elsewhere / folder).mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert run(["registry", "list", "--json"], capsys)[1].strip() == "[]"
    argv = (["--repo", str(repo), "registry", "list", "--json"] if where == "before"
            else ["registry", "list", "--json", "--repo", str(repo)])
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert [asset["name"] for asset in json.loads(out)] == ["demo"]


def test_repo_flag_after_the_command_wins_over_one_before(repo, tmp_path, capsys):
    code, _, err = run(["--repo", str(repo), "validate", "--repo", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "nowhere has no configs/ folder" in err


def test_registry_output_is_redacted(repo, secret, capsys):
    dataset = repo / "datasets" / "demo" / "demo.jsonl"
    Project.at(repo).registry("local").register(AssetSpec("demo", "dataset", dataset, f"key {secret}"))
    for extra in ([], ["--json"]):
        code, out, _ = run(["--repo", str(repo), "registry", "show", "demo", "--version", "1",
                            *extra], capsys)
        assert code == 0
        assert secret not in out and MASK in out
    assert json.loads(out)["description"] == f"key {MASK}"


def test_registry_backend_flag_is_registry_and_backend_a_hidden_alias(repo, capsys):
    show = leaf_parsers(build_parser())["registry show"]
    assert "--registry" in show.format_help() and "--backend" not in show.format_help()
    code, out, err = run(["--repo", str(repo), "registry", "list", "--backend", "local"], capsys)
    assert code == 0 and "no registered assets" in out
    assert "--backend is deprecated, use --registry" in err
    code, _, err = run(["--repo", str(repo), "registry", "list", "--registry", "nope"], capsys)
    assert code == 2 and "invalid choice" in err


def test_internal_errors_have_no_traceback_unless_debugging(repo, monkeypatch, capsys):
    from genaiops.cli import validate

    def broken(args):
        """A command with a bug."""
        raise KeyError("boom")

    monkeypatch.setattr(validate, "cmd_validate", broken)
    monkeypatch.delenv("GENAIOPS_DEBUG", raising=False)
    code, _, err = run(["--repo", str(repo), "validate"], capsys)
    assert code == 1 and "internal error: KeyError: 'boom'" in err and "GENAIOPS_DEBUG=1" in err
    code, out, _ = run(["--repo", str(repo), "validate", "--json"], capsys)
    assert code == 1 and json.loads(out)["error"] == "internal error: KeyError: 'boom'"
    monkeypatch.setenv("GENAIOPS_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["--repo", str(repo), "validate"])


def test_interrupt_exits_130(repo, monkeypatch, capsys):
    from genaiops.cli import validate

    def interrupted(args):
        """A command stopped by Ctrl-C."""
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "cmd_validate", interrupted)
    code, _, err = run(["--repo", str(repo), "validate"], capsys)
    assert code == 130 and "interrupted" in err


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


def test_a_reader_that_goes_away_is_no_internal_error(repo_root):
    """`genaiops validate | head -1`: the reader is gone before genaiops writes; it stops quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "genaiops", "--repo", str(repo_root), "validate",
                               "-u", "classification"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
