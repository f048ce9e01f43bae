"""Worker processes under attack: a worker count that would exhaust the machine is refused when
validated, and a worker that dies (SIGKILL, as the out-of-memory killer sends) fails the run with
exit 1 and leaves no process of its group behind. Real promptflow runs through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from deploy_helpers import copy_use_case, run_cli, write_overlay

from genaiops.execution.capacity import WORKERS_PER_CORE, Machine, worker_problem


@pytest.fixture
def repo(tmp_path) -> Path:
    root = copy_use_case(tmp_path / "repo", "classification")
    # a crashed line must fail the run even where failed lines are tolerated; retries must not hide it
    write_overlay(root, "slow", worker_count=4, tolerance=40, attempts=5)
    return root


# -- capacity ---------------------------------------------------------------------------------------

def test_capacity_limits_scale_with_the_machine():
    small, big = Machine(cores=2, memory_bytes=8 * 2**30), Machine(cores=64, memory_bytes=512 * 2**30)
    assert worker_problem(16, 2, small) is None  # the sample config on a 2-core, 8 GB CI agent
    assert "per core" in worker_problem(2 * WORKERS_PER_CORE + 1, 1, small)
    assert "memory" in worker_problem(16, 4, small)
    assert worker_problem(256, 4, big) is None


@pytest.mark.parametrize("setting", ["worker_count: 100000", "max_parallel: 100000"])
def test_a_config_worker_count_beyond_the_machine_is_refused_at_validation(repo, setting, capsys):
    field, value = setting.split(": ")
    write_overlay(repo, "slow", **{field: int(value)})
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification", "-e", "slow", "--json"],
                           capsys)
    [problem] = json.loads(out)["use_cases"][0]["problems"]
    assert code == 2
    assert problem["file"].endswith("experiment.slow.yaml") and problem["line"] and \
        problem["field"] == f"runtime.{field}"
    assert "more than this machine" in problem["message"] or \
        "more than genaiops starts (at most 64" in problem["message"]  # max_parallel: any machine
    assert "at most" in problem["hint"] or "64 or less" in problem["hint"]


def test_azure_compute_is_not_held_to_this_machine(repo, capsys):
    overlay = write_overlay(repo, "slow", worker_count=100000)
    overlay.write_text(overlay.read_text().replace("runtime:\n", "runtime:\n  backend: azure\n"))
    code, out, _ = run_cli(["--repo", str(repo), "validate", "-u", "classification", "-e", "slow"], capsys)
    assert code == 0, out


@pytest.mark.parametrize("flag", [["--workers", "100000"], ["--max-parallel", "100000"]])
def test_a_cli_worker_count_beyond_the_machine_is_refused_before_any_run(repo, state_dir, flag, capsys):
    started = time.monotonic()
    code, _, err = run_cli(["--repo", str(repo), "run", "experiment", "-u", "classification", "-e", "slow",
                            *flag], capsys)
    assert code == 2 and "Traceback" not in err
    assert "more than this machine" in err or "is more than 64 runs at once" in err
    assert time.monotonic() - started < 10
    assert not (state_dir / "ledger" / "runs").exists() or not list((state_dir / "ledger/runs").iterdir())


# -- a dying worker ---------------------------------------------------------------------------------

def _start(repo: Path, state_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "GENAIOPS_STATE_DIR": str(state_dir), "GENAIOPS_SIMULATOR_LATENCY_MS": "400"}
    return subprocess.Popen([sys.executable, "-m", "genaiops", "--repo", str(repo), "run", "experiment",
                             "-u", "classification", "-e", "slow", "--no-progress", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _depth(process: psutil.Process, ancestor: psutil.Process) -> int | None:
    """Generations between them: promptflow's line processes are at 3 (worker -> forkserver ->
    the run's process manager -> line process)."""
    depth = 0
    while process is not None and process.pid != ancestor.pid:
        process, depth = process.parent(), depth + 1
    return depth if process is not None else None


def _busy_worker(cli: subprocess.Popen) -> tuple[psutil.Process, list[psutil.Process]]:
    """The worker running the batch, once promptflow's line processes are up."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert cli.poll() is None, cli.communicate()
        for worker in psutil.Process(cli.pid).children():
            try:
                if "promptflow.worker" not in " ".join(worker.cmdline()):
                    continue
                lines = [p for p in worker.children(recursive=True) if _depth(p, worker) == 3]
            except psutil.Error:
                continue
            if len(lines) >= 2:
                time.sleep(1.0)  # lines in flight
                return worker, lines
        time.sleep(0.2)
    raise AssertionError("no busy worker within 120 s")


def _group_members(pgid: int) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:80]}")
        except (ProcessLookupError, psutil.Error):
            continue
    return found


@pytest.mark.promptflow
@pytest.mark.parametrize("victim", ["worker", "line process"])
def test_a_killed_process_fails_the_run_and_leaves_no_orphans(repo, state_dir, victim):
    cli = _start(repo, state_dir)
    try:
        worker, lines = _busy_worker(cli)
        group = os.getpgid(worker.pid)
        (worker if victim == "worker" else lines[0]).send_signal(signal.SIGKILL)
        out, err = cli.communicate(timeout=180)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert cli.returncode == 1, err.decode()
    result = json.loads(out)
    assert result["ok"] is False
    [failure] = result["failures"]
    expected = "killed by SIGKILL" if victim == "worker" else "line process died"
    assert expected in failure["errors"][0]["message"], failure
    deadline = time.monotonic() + 10
    while _group_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(group) == []
