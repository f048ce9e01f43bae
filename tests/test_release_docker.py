"""`run build` then `run deploy --evidence` with a real dockerd and a loopback registry (fakes/registry):
the flow hash an evidence names is checked against the image's own files on every deploy, never
taken from a scan that passed for the same image and secrets with another flow expected.

Skips with the reason when no docker daemon or base image is available (.ci/setup-docker.sh).
Hold /tmp/genaiops-docker.lock while running it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest
from deploy_helpers import copy_use_case, run_cli
from fakes.registry import USER, FakeRegistry
from test_deploy_docker import REASON, _free_pair
from test_release_cli import NODES, _summary

from genaiops.config import load_experiment
from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.deploy.audit import audit_log
from genaiops.deploy.targets.base import slug
from genaiops.deploy.variant import ChosenVariant
from genaiops.phases.build import stage_candidate
from genaiops.phases.context import PhaseContext
from genaiops.simulator import SimulatorServer
from genaiops.workspace import Workspace

pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"docker: {REASON}"), pytest.mark.docker,
              pytest.mark.timeout(900)]

UC = "classification"
RUN_ID = secrets.token_hex(3)
ENV = f"rel{RUN_ID}"
TOKEN = "registry-token-" + RUN_ID


@pytest.fixture
def release(tmp_path, state_dir, trust_dir, monkeypatch):
    """A repo copy whose `ENV` is a docker target pulling from a loopback registry we are logged in to."""
    registry = FakeRegistry(TOKEN).start()
    docker_config = tmp_path / "docker-config"
    subprocess.run(["docker", "--config", str(docker_config), "login", registry.host, "-u", USER,
                    "--password-stdin"], input=TOKEN, text=True, capture_output=True, check=True)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("GENAIOPS_WHEEL_CACHE", "/tmp/genaiops-test-wheels")
    image_name = f"genaiops-test/release-{RUN_ID}"
    repo = copy_use_case(tmp_path / "repo", UC)
    (repo / f"configs/{UC}/deployment.yaml").write_text(f"""\
image:
  name: {image_name}
  base_image: {os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)}
smoke:
  request: configs/{UC}/sample-request.json
  expect_outputs: [category, summary]
environments:
  {ENV}:
    target: docker
    port: {_free_pair()}
    workers: 1
    image_registry: {registry.host}
""")
    sim = SimulatorServer(rules_path=repo / f"configs/{UC}/simulator.yaml").start()
    try:
        yield {"repo": repo, "registry": registry, "sim": sim, "tmp": tmp_path}
    finally:
        sim.stop()
        registry.stop()
        ids = dockercli.text("ps", "-aq", "--filter", f"label=io.genaiops.deployment={slug(UC, ENV)}")
        if ids:
            dockercli.docker("rm", "-f", *ids.split(), check=False)
        for name in (image_name, f"{registry.host}/{image_name}"):
            tags = dockercli.text("images", "-q", name).split()
            if tags:
                dockercli.docker("rmi", "-f", *sorted(set(tags)), check=False)


def _deploy(release, evidence, capsys):
    return run_cli(["--repo", str(release["repo"]), "run", "deploy", "-u", UC, "-e", ENV, "--evidence",
                    str(evidence), "--simulator-url", release["sim"].url, "--json"], capsys)


def _staged_flow_hash(repo) -> str:
    ctx = PhaseContext.for_config(load_experiment(repo, UC))
    return stage_candidate(ctx, ChosenVariant("summarize.full+classify.careful", NODES, {}, "best"),
                           simulator_url=None).flow_hash


def test_a_flow_hash_copied_into_the_evidence_is_checked_against_the_image_not_a_cached_scan(release, capsys):
    repo = release["repo"]
    evidence = release["tmp"] / "evidence.json"
    code, out, err = run_cli(["--repo", str(repo), "run", "build", "-u", UC, "-e", ENV,
                              "--summary", str(_summary(repo, release["tmp"])), "--evidence", str(evidence)], capsys)
    assert code == 0, err
    code, out, err = _deploy(release, evidence, capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["ok"] and first["outcome"]["smoke"]["ok"]

    # the flow changes after the release; its new hash is copied into the evidence
    normalize = repo / f"flows/{UC}/standard/normalize.py"
    normalize.write_text(normalize.read_text() + "\n# changed after the image was built\n")
    data = json.loads(evidence.read_text())
    data["flow_hash"] = _staged_flow_hash(repo)
    assert data["flow_hash"] != first["flow_hash"]
    evidence.write_text(json.dumps(data))

    code, out, err = _deploy(release, evidence, capsys)
    assert code == 1, out + err
    refused = json.loads(out)
    assert "failed its scan" in refused["error"] and "normalize.py" in refused["error"]
    assert "passed before" not in err
    records = audit_log(Workspace.for_repo(repo)).read()
    deployed = [r for r in records if r["event"] == "deployed" and r["env"] == ENV]
    assert [r["flow_hash"] for r in deployed] == [first["flow_hash"]]  # nothing recorded for the new hash
    scans = [(r["flow_hash"], r["ok"]) for r in records if r["event"] == "image_scanned"]
    assert scans[-1] == (data["flow_hash"], False)
