"""Test isolation: every test session gets its own HOME, so promptflow state, connections and
keyring live in a temp dir, telemetry is off and no trace service is started."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="genaiops-test-home-"))
os.environ["HOME"] = str(_SESSION_HOME)
os.environ.pop("GENAIOPS_REPO", None)
os.environ.pop("GENAIOPS_STATE_DIR", None)

from genaiops.engines.promptflow.env import prepare_promptflow  # noqa: E402

prepare_promptflow()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _secrets_of_this_test_only():
    """Each command runs in a process of its own; tests run many in one. The secrets one test's
    commands registered (canaries, placeholder keys) must not become known secrets of the next:
    an image scan would find a short one in an image's system libraries."""
    from genaiops.secrets import REDACTOR

    before = REDACTOR.values()
    yield
    REDACTOR.keep_only(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """A private `.genaiops/` state dir for one test."""
    path = tmp_path / "state"
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A `.genaiops/` state dir shared by one module's tests (their runs are reused across them)."""
    path = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAIOPS_STATE_DIR", str(path))
        yield path


@pytest.fixture
def workspace(tmp_path, state_dir):
    """A `Workspace` whose state folder is `state_dir` (for tests that call modules directly)."""
    from genaiops.workspace import Workspace

    return Workspace.for_repo(tmp_path)


@pytest.fixture
def trust_dir(tmp_path_factory, monkeypatch) -> Path:
    """A private trust folder (outside repo and state) with an audit key made by `genaiops audit init`."""
    from genaiops.cli import main

    path = tmp_path_factory.mktemp("trust")
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(path))
    monkeypatch.delenv("GENAIOPS_AUDIT_KEY", raising=False)
    assert main(["--repo", str(REPO_ROOT), "audit", "init"]) == 0
    return path


# -- tiers ------------------------------------------------------------------------------------------
# `slow`: a test that starts real engine processes or Docker. The fast tier (`make test-fast`,
# `pytest -m "not slow"`) leaves them out; `make test` runs everything. A test is slow when it
# carries one of these markers (on the test or its module):
SLOW_MARKERS = ("promptflow", "agent_framework", "docker")


def pytest_collection_modifyitems(config, items):
    """Mark every engine or Docker test `slow`, and under GENAIOPS_REQUIRE_DOCKER=1 (CI) refuse to
    let a Docker test skip: a missing daemon or base image would otherwise turn the release tests
    (image builds, the pipeline contract run) into silent skips and CI into a green that proved
    nothing."""
    require_docker = os.environ.get("GENAIOPS_REQUIRE_DOCKER") == "1"
    would_skip = []
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
        if require_docker and item.get_closest_marker("docker"):
            for mark in item.iter_markers("skipif"):
                if mark.args and mark.args[0] is True:
                    would_skip.append(f"{item.nodeid}: {mark.kwargs.get('reason', '')}")
    if would_skip:
        raise pytest.UsageError("GENAIOPS_REQUIRE_DOCKER=1 but these Docker tests would skip:\n  "
                                + "\n  ".join(would_skip[:5]))
    _check_docker_lane(items)
    _longest_first(items)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        alone = pytest.mark.skip(reason="`solo`: needs the machine to itself; `make test` runs it after "
                                        "the parallel part (pytest -m solo)")
        for item in items:
            if item.get_closest_marker("solo"):
                item.add_marker(alone)


# -- two workers ------------------------------------------------------------------------------------
# `make test` runs on two pytest-xdist workers (then the few `solo` tests alone), each test file on one worker (its module fixtures are
# built once). Docker tests share the one daemon, host ports (`--network host`) and container names
# made from use case and environment, so every file with a Docker test runs in one lane, one file
# after another on the same worker; the other worker takes the rest. A Docker test in a file not
# listed here fails collection, so a new one cannot race the lane by accident.
DOCKER_LANE = "docker lane"
DOCKER_LANE_FILES = frozenset({
    "test_deploy_docker.py", "test_github_release_contract.py", "test_image_scan.py",
    "test_monitor_docker.py", "test_pipeline_contract.py", "test_python_engine_image.py",
    "test_release_docker.py",
})


def _check_docker_lane(items) -> None:
    strays = sorted({item.path.name for item in items
                     if item.get_closest_marker("docker") and item.path.name not in DOCKER_LANE_FILES})
    if strays:
        raise pytest.UsageError(f"tests/conftest.py: Docker tests in {', '.join(strays)} are not in "
                                "DOCKER_LANE_FILES; add the file there so it runs in the Docker lane")


def _longest_first(items) -> None:
    """Order files: the Docker lane, then files with slow tests, then the fast ones (order within a
    file kept). Workers take files in this order, so the long ones start first and the short ones
    fill the end instead of a long file starting last."""
    rank: dict[Path, int] = {}
    for item in items:
        tier = 0 if item.path.name in DOCKER_LANE_FILES else 1 if item.get_closest_marker("slow") else 2
        rank[item.path] = min(rank.get(item.path, 2), tier)
    items.sort(key=lambda item: rank[item.path])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadfile`: one work unit per file, except the Docker lane, one unit for all of
    DOCKER_LANE_FILES."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class DockerLaneScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return DOCKER_LANE if Path(path).name in DOCKER_LANE_FILES else path

    return DockerLaneScheduling(config, log)
