"""promptflow's run folders (`~/.promptflow/.runs/<run>`) hold whatever an endpoint sent back. When an
endpoint echoes the key in a 401 body (as OpenAI does), promptflow writes it into logs, error files
and line outputs. genaiops keeps those folders private (0700, files 0600) and scrubs every known
secret value from them after each run: afterwards the key is nowhere on disk in plain text (the
connection store keeps it encrypted). Real promptflow runs through the CLI."""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

import pytest
from deploy_helpers import copy_use_case, run_cli, write_overlay

from genaiops.engines.promptflow.env import promptflow_home
from genaiops.simulator import SimulatorServer

pytestmark = pytest.mark.promptflow

def _files_holding(value: bytes, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for path in Path(root).rglob("*"):
            try:
                if path.is_file() and not path.is_symlink() and value in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


@pytest.fixture
def repo(tmp_path) -> Path:
    root = copy_use_case(tmp_path / "repo", "classification")
    write_overlay(root, "fast", rows=6)
    return root


def test_an_echoed_key_is_nowhere_on_disk_after_the_run(repo, state_dir, tmp_path, monkeypatch, capsys):
    canary = "sk-canary-" + secrets.token_hex(16)
    # the command's temp files go to a folder this test made: it searches only what it made
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    (tmp_path / ".env").write_text(f"LLM_API_KEY={canary}\n")
    monkeypatch.setenv("GENAIOPS_DOTENV", str(tmp_path / ".env"))
    with SimulatorServer(rules_path=repo / "configs/classification/simulator.yaml", api_key=canary) as sim:
        # every answer is a 401 whose body repeats the key
        sim.faults.add("401", count=None)
        monkeypatch.setenv("LLM_API_BASE", sim.openai_base_url)  # the connection: this simulator
        code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "classification", "-e",
                                  "fast", "--no-progress"], capsys)
    assert code == 1 and "Incorrect API key provided" in err, out + err
    assert canary not in out + err
    runs = promptflow_home() / ".runs"
    run_dirs = [d for d in runs.iterdir() if d.is_dir()]
    assert run_dirs
    leaked = _files_holding(canary.encode(), Path(os.path.expanduser("~")), state_dir, repo, private_tmp)
    assert leaked == []
    newest = max(run_dirs, key=lambda d: d.stat().st_mtime)
    for path in [newest, *newest.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}"
    assert stat.S_IMODE(promptflow_home().stat().st_mode) & 0o077 == 0


def test_a_long_tmpdir_does_not_stop_the_workers(repo, state_dir, tmp_path, monkeypatch, capsys):
    """A deep `$TMPDIR` (CI agents, pytest-xdist) once made every promptflow worker die starting its
    forkserver ("AF_UNIX path too long"); the workers' folders now go where a socket path fits, and
    leave nothing behind there or in `$TMPDIR`."""
    from genaiops.workspace.files import socket_safe_temp_base
    from genaiops.workspace.sweep import owner_tag

    deep = tmp_path / ("d" * 60) / "tmp"
    deep.mkdir(parents=True, mode=0o700)
    assert len(str(deep)) > 80
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert socket_safe_temp_base() == Path("/tmp")
    pools = f"genaiops-jobs-{owner_tag()}-*"  # this process's runner pools (earlier tests' may be open)
    before = set(Path("/tmp").glob(pools))
    code, out, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "classification", "-e", "fast",
                              "--no-progress"], capsys)
    assert code == 0, out + err
    assert set(Path("/tmp").glob(pools)) <= before  # the command's pool folder is gone
    assert [p.name for p in deep.iterdir() if p.name.startswith("genaiops-")] == []
