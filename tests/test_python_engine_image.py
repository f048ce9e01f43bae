"""The python engine's serving image with a real dockerd: `genaiops new --kind python`, then
`run deploy` builds it offline (local base image, host-built wheels), starts it and smoke-tests
/score against the LLM simulator. Skips with the reason when no docker daemon or base image."""

from __future__ import annotations

import json
import os
import secrets
import socket
import urllib.request

import pytest
from deploy_helpers import run_cli

from genaiops.cli import main
from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.deploy.targets.base import slug
from genaiops.simulator import SimulatorServer

REASON = dockercli.unavailable_reason()
BASE = os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)
if REASON is None and dockercli.inspect("image", BASE) is None:
    REASON = f"base image {BASE} missing (run .ci/setup-docker.sh)"
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900),
              pytest.mark.skipif(REASON is not None, reason=f"docker: {REASON}")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_python_flow_builds_serves_and_passes_its_smoke_test(tmp_path, monkeypatch, capsys):
    run = secrets.token_hex(3)
    image, env, port = f"genaiops-test/pyflow-{run}", f"py{run}", _free_port()
    root = tmp_path / "repo"
    for top in ("flows", "configs", "datasets"):
        (root / top).mkdir(parents=True)
    for var in ("LLM_API_TYPE", "LLM_API_BASE", "LLM_API_KEY", "LLM_API_VERSION", "GENAIOPS_AUDIT_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GENAIOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.setenv("GENAIOPS_WHEEL_CACHE", "/tmp/genaiops-test-wheels")
    assert main(["--repo", str(root), "new", "tone", "--kind", "python"]) == 0
    (root / "configs/tone/deployment.yaml").write_text(f"""\
image:
  name: {image}
  base_image: {BASE}
smoke:
  request: configs/tone/sample-request.json
  expect_outputs: [sentiment]
environments:
  {env}:
    target: docker
    port: {port}
    workers: 1
""")
    assert main(["--repo", str(root), "audit", "init"]) == 0
    sim = SimulatorServer(rules_path=root / "configs/tone/simulator.yaml").start()
    try:
        code, out, err = run_cli(["--repo", str(root), "run", "deploy", "-u", "tone", "-e", env,
                                  "--variant", "precise", "--simulator-url", sim.url, "--json"],
                                 capsys)
        assert code == 0, out + err
        result = json.loads(out)
        assert result["outcome"]["smoke"]["ok"] is True
        assert result["outcome"]["smoke"]["outputs"]["sentiment"] in ("positive", "negative", "neutral")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/score", method="POST",
            data=json.dumps({"text": "I love this kettle, great value"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read()) == {"sentiment": "positive"}
    finally:
        sim.stop()
        ids = dockercli.text("ps", "-aq", "--filter", f"label=io.genaiops.deployment={slug('tone', env)}")
        if ids:
            dockercli.docker("rm", "-f", *ids.split(), check=False)
        tags = dockercli.text("images", "-q", image).split()
        if tags:
            dockercli.docker("rmi", "-f", *sorted(set(tags)), check=False)
