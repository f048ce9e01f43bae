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
