"""Hostile flow code meets the bounds of docs/trust.md on both engines: a command ends within its
timeouts whatever the flow does (a build() or a line that never returns, a blocked event loop, a
child holding stdout, a killed batch process, a stopped worker), and no process the flow started
and no temp folder outlives it, whether it succeeded, timed out or was killed.

Every test runs `genaiops run experiment` as a subprocess with a private TMPDIR, and plants
`HOSTILE_MARK=<uuid>` in the environment of every process the flow starts: in a session of its
own, double-forked with an otherwise empty environment (out of reach of genaiops' owner tag), and
holding the worker's stdout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from genaiops.engines.agent_framework import environment

ENGINES = ["promptflow", "agent_framework"]
SLEEP = shutil.which("sleep")

ORPHANS = f'''
MARK = "{{mark}}"


def orphans():
    """One child holding stdout, one in a session of its own, one double-forked whose parent exits
    at once, with an empty environment: each runs 303 s unless genaiops ends it."""
    marked = {{**os.environ, "HOSTILE_MARK": MARK}}
    subprocess.Popen(["{SLEEP}", "303"], env=marked)
    subprocess.Popen(["{SLEEP}", "303"], env=marked, start_new_session=True,
                     stdout=subprocess.DEVNULL)
    subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.Popen("
                      "[sys.argv[1], '303'], env={{'HOSTILE_MARK': sys.argv[2]}}, "
                      "start_new_session=True)", "{SLEEP}", MARK],
                     env={{"HOSTILE_MARK": MARK}}, stdout=subprocess.DEVNULL).wait()
'''

APP = '''\
"""A hostile Agent Framework app."""
import asyncio
import os
import subprocess
import sys
import time

from agent_framework import Executor, WorkflowBuilder, WorkflowContext, handler

INPUTS = ("text",)
OUTPUTS = ("answer",)
{orphans}
{module}

class Answer(Executor):
    def __init__(self):
        super().__init__(id="answer")

    @handler
    async def run(self, inputs: dict, ctx: WorkflowContext[dict, dict]) -> None:
        text = inputs["text"]
{line}
        await ctx.yield_output({{"answer": text.upper()}})


def build(llm):
{build}
    return WorkflowBuilder(name="hostile", start_executor=Answer()).build()
'''

DAG = """\
inputs:
  text: {type: string}
outputs:
  answer: {type: string, reference: "${answer.output}"}
nodes:
  - name: answer
    type: python
    source: {type: code, path: answer.py}
    inputs: {text: "${inputs.text}"}
"""

NODE = '''\
import asyncio
import os
import subprocess
import sys
import time

from promptflow.core import tool
{orphans}
{module}

@tool
def answer(text: str) -> str:
{build}
{line}
    return text.upper()
'''

CONFIG = """\
name: hostile
{engine}flow: flows/hostile/{flow}
connections:
  - {{name: llm, type: open_ai, api_base: simulator, api_key: simulator-key}}
datasets:
  - name: rows
    source: datasets/hostile/rows.jsonl
    mappings: {{text: "${{data.text}}"}}
evaluators: []
runtime: {runtime}
"""


def hostile_repo(root: Path, engine: str, mark: str, *, build: str = "", line: str = "",
                 module: str = "", rows=("a", "b", "c"), **runtime) -> Path:
    """A use case `hostile` whose flow runs `build` (agent_framework: in build(); promptflow: at
    the start of the node) and `line` (in the handler / node) for every row; `module` at import."""
    settings = {"worker_count": 1, "line_timeout_sec": 3, "retries": {"max_attempts": 1,
                "backoff_sec": 0}, **runtime}
    parts = {"orphans": ORPHANS.replace("{mark}", mark), "module": module,
             "build": textwrap.indent(build or "pass", "    "),
             "line": textwrap.indent(line or "pass", " " * (8 if engine == "agent_framework" else 4))}
    if engine == "agent_framework":
        (root / "flows/hostile/app").mkdir(parents=True)
        (root / "flows/hostile/app/app.py").write_text(APP.format(**parts))
        flow, engine_line = "app", "engine: agent_framework\n"
    else:
        (root / "flows/hostile/standard").mkdir(parents=True)
        (root / "flows/hostile/standard/flow.dag.yaml").write_text(DAG)
        (root / "flows/hostile/standard/answer.py").write_text(NODE.format(**parts))
        flow, engine_line = "standard", ""
    (root / "datasets/hostile").mkdir(parents=True)
    (root / "datasets/hostile/rows.jsonl").write_text("".join(json.dumps({"text": r}) + "\n"
                                                              for r in rows))
    (root / "configs/hostile").mkdir(parents=True)
    (root / "configs/hostile/experiment.yaml").write_text(
        CONFIG.format(engine=engine_line, flow=flow, runtime=json.dumps(settings)))
    return root


@pytest.fixture
def mark() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def tmpdir_():
    """A private TMPDIR for the command under test (short: multiprocessing binds a socket in it)."""
    path = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "agent_framework" and not environment.status().get("ready"):
        pytest.skip("the agent_framework engine environment is not set up (make setup)")
    return request.param


def command(repo: Path, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir), "GENAIOPS_STATE_DIR": str(repo / ".state")}
    return subprocess.Popen([sys.executable, "-m", "genaiops", "--repo", str(repo), "run", "experiment",
                             "-u", "hostile", "--force", "--no-progress", "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(cli: subprocess.Popen, within: float) -> tuple[dict, str, float]:
    """The command's JSON result, stderr and how long it took to end from now."""
    started = time.monotonic()
    try:
        out, err = cli.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(cli.pid, signal.SIGKILL)
        out, err = cli.communicate()
        raise AssertionError(f"the command did not end within {within} s: {err.decode()[-2000:]}") from None
    return json.loads(out or b"{}"), err.decode(), time.monotonic() - started


def marked(mark: str) -> list[str]:
    """Live processes carrying HOSTILE_MARK=mark."""
    needle = f"HOSTILE_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{entry.name} {(entry / 'cmdline').read_bytes()[:80]!r}")
        except OSError:
            continue
    return found


def workers_of(cli_pid: int) -> list[str]:
    """Live processes started for the command with pid `cli_pid` (genaiops' owner tag)."""
    from genaiops.execution.procs import owner_of

    found = []
    for process in psutil.process_iter(["pid"]):
        tag = owner_of(process.pid)
        try:
            if tag and f"-{cli_pid}." in tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
        except psutil.Error:
            continue
    return found


def assert_nothing_left(mark: str, cli_pid: int, tmpdir: Path | None, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while (marked(mark) or workers_of(cli_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked(mark) == [], "processes the flow started outlived the command"
    assert workers_of(cli_pid) == [], "worker processes outlived the command"
    if tmpdir is not None:
        assert sorted(p.name for p in tmpdir.iterdir()) == [], "temp folders outlived the command"


def first_error(result: dict) -> str:
    return result["failures"][0]["errors"][0]["message"]


def wait_for(predicate, within: float = 90, what: str = ""):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not seen within {within} s: {what}")


def worker_process(cli: subprocess.Popen) -> psutil.Process | None:
    assert cli.poll() is None, cli.communicate()
    for child in psutil.Process(cli.pid).children():
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "promptflow.worker" in line or "genaiops_af_runtime.batch" in line:
            return child
    return None


# -- a command ends, and leaves nothing ------------------------------------------------------

@pytest.mark.promptflow
def test_children_a_flow_leaves_running_do_not_outlive_a_successful_run(engine, mark, tmpdir_,
                                                                        tmp_path):
    """Children in their own session, double-forked without an environment, and (agent_framework)
    one holding the worker's stdout: the run ends when its lines do, and takes them all."""
    repo = hostile_repo(tmp_path / "repo", engine, mark, build="orphans()")
    cli = command(repo, tmpdir_)
    result, err, took = finish(cli, within=120)
    assert cli.returncode == 0, err
    assert result["runs"][0]["lines_ok"] == 3
    assert_nothing_left(mark, cli.pid, tmpdir_)


@pytest.mark.promptflow
def test_a_killed_orchestrator_leaves_nothing_running_and_its_temp_folder_is_swept(engine, mark,
                                                                                   tmpdir_, tmp_path):
    """SIGKILL to the command while its flow's children run: the workers get the parent-death
    signal and end their trees at once; the next command removes the temp folder left behind."""
    repo = hostile_repo(tmp_path / "repo", engine, mark, build="orphans()",
                        line="time.sleep(60)" if engine == "promptflow" else "await asyncio.sleep(60)",
                        line_timeout_sec=120)
    cli = command(repo, tmpdir_)
    wait_for(lambda: len(marked(mark)) >= 3, what="the flow's children")
    os.killpg(cli.pid, signal.SIGKILL)  # the workers have sessions of their own: not killed here
    cli.wait()
    assert_nothing_left(mark, cli.pid, None, within=3)
    left = sorted(p.name for p in tmpdir_.iterdir())
    assert left and all(name.startswith("genaiops-") for name in left), left
    next_cli = command(hostile_repo(tmp_path / "next", engine, mark), tmpdir_)
    finish(next_cli, within=120)
    assert next_cli.returncode == 0
    assert sorted(p.name for p in tmpdir_.iterdir()) == []


# -- timeouts ---------------------------------------------------------------------------------

@pytest.mark.promptflow
@pytest.mark.parametrize("where", ["build", "module"])
def test_an_agent_framework_app_that_never_loads_or_builds_times_out(mark, tmpdir_, tmp_path, where):
    if not environment.status().get("ready"):
        pytest.skip("the agent_framework engine environment is not set up (make setup)")
    hang = "orphans()\ntime.sleep(303)"
    repo = hostile_repo(tmp_path / "repo", "agent_framework", mark, line_timeout_sec=2,
                        **({"build": hang} if where == "build" else {"module": hang}))
    cli = command(repo, tmpdir_)
    result, err, took = finish(cli, within=60)
    assert cli.returncode == 1, err
    message = first_error(result)
    if where == "build":
        assert "line timed out after 2s" in message and "blocked the event loop at app.py" in message
        assert "in build" in message
    else:
        assert "the app did not load within 2s" in message and "at app.py" in message
    assert_nothing_left(mark, cli.pid, tmpdir_)


@pytest.mark.promptflow
def test_a_line_blocking_its_event_loop_or_process_is_timed_out_from_outside(engine, mark, tmpdir_,
                                                                            tmp_path):
    """A synchronous sleep in an async executor handler (agent_framework) or a node (promptflow):
    the line fails as timed out, the lines before it are kept."""
    repo = hostile_repo(tmp_path / "repo", engine, mark, rows=("a", "block", "c"),
                        line='if text == "block":\n    orphans()\n    time.sleep(303)',
                        line_timeout_sec=2)
    cli = command(repo, tmpdir_)
    result, err, took = finish(cli, within=90)
    assert cli.returncode == 1, err
    run = result["runs"][0]
    assert run["lines_ok"] >= 1 and run["lines_failed"] >= 1, run
    assert "time" in first_error(result).lower() and "out" in first_error(result).lower()
    assert_nothing_left(mark, cli.pid, tmpdir_)


@pytest.mark.promptflow
def test_a_batch_timeout_stops_a_run_whose_lines_are_within_theirs(engine, mark, tmpdir_, tmp_path):
    repo = hostile_repo(tmp_path / "repo", engine, mark, build="orphans()",
                        line="time.sleep(30)" if engine == "promptflow" else "await asyncio.sleep(30)",
                        line_timeout_sec=60, batch_timeout_sec=4)
    cli = command(repo, tmpdir_)
    result, err, took = finish(cli, within=60)
    assert cli.returncode == 1, err
    assert "did not finish within 4 s" in first_error(result)
    assert_nothing_left(mark, cli.pid, tmpdir_)


# -- killed and stopped processes -------------------------------------------------------------

@pytest.mark.promptflow
def test_a_killed_promptflow_batch_process_fails_the_run_at_once(mark, tmpdir_, tmp_path):
    """The manager process promptflow forks for a run (the parent of its line processes):
    promptflow would wait for it forever."""
    repo = hostile_repo(tmp_path / "repo", "promptflow", mark, build="orphans()",
                        line="time.sleep(20)", line_timeout_sec=60, worker_count=2)
    cli = command(repo, tmpdir_)

    def manager():
        worker = worker_process(cli)
        if worker is None:
            return None
        for process in worker.children(recursive=True):
            try:
                if len(process.children()) >= 2 and process.ppid() != worker.pid:
                    return process
            except psutil.Error:
                continue
        return None

    wait_for(lambda: len(marked(mark)) >= 3, what="the flow's children")
    wait_for(manager, what="promptflow's batch process").send_signal(signal.SIGKILL)
    result, err, took = finish(cli, within=30)
    assert cli.returncode == 1, err
    assert "promptflow's batch process" in first_error(result) and "SIGKILL" in first_error(result)
    assert took < 15
    assert_nothing_left(mark, cli.pid, tmpdir_)


@pytest.mark.promptflow
def test_a_stopped_worker_fails_the_run_and_leaves_nothing(engine, mark, tmpdir_, tmp_path):
    repo = hostile_repo(tmp_path / "repo", engine, mark, build="orphans()",
                        line="time.sleep(20)" if engine == "promptflow" else "await asyncio.sleep(20)",
                        line_timeout_sec=60)
    cli = command(repo, tmpdir_)
    wait_for(lambda: len(marked(mark)) >= 3, what="the flow's children")
    worker = wait_for(lambda: worker_process(cli), what="the worker")
    os.killpg(worker.pid, signal.SIGSTOP)
    result, err, took = finish(cli, within=30)
    assert cli.returncode == 1, err
    assert "was stopped (SIGSTOP)" in first_error(result)
    assert took < 15
    assert_nothing_left(mark, cli.pid, tmpdir_)


@pytest.mark.promptflow
@pytest.mark.solo  # any other command on the machine would end the stopped tree before the next one here
def test_a_stopped_worker_of_a_killed_orchestrator_is_ended_by_the_next_command(engine, mark,
                                                                                tmpdir_, tmp_path):
    """A stopped worker cannot act on its parent-death signal: its tree outlives the killed
    command, and the next command ends it (the workers' owner tags name a dead orchestrator)."""
    repo = hostile_repo(tmp_path / "repo", engine, mark, build="orphans()",
                        line="time.sleep(60)" if engine == "promptflow" else "await asyncio.sleep(60)",
                        line_timeout_sec=120)
    cli = command(repo, tmpdir_)
    wait_for(lambda: len(marked(mark)) >= 3, what="the flow's children")
    worker = wait_for(lambda: worker_process(cli), what="the worker")
    os.killpg(worker.pid, signal.SIGSTOP)
    os.killpg(cli.pid, signal.SIGKILL)
    cli.wait()
    time.sleep(1)
    assert marked(mark) and workers_of(cli.pid)  # held by the stopped worker
    next_cli = command(hostile_repo(tmp_path / "next", engine, uuid.uuid4().hex), tmpdir_)
    finish(next_cli, within=120)
    assert next_cli.returncode == 0
    assert_nothing_left(mark, cli.pid, tmpdir_, within=3)
