"""End to end with a real dockerd, for each engine: build the sample classification flow's image
offline (local base image) - the promptflow DAG, and its Agent Framework port (Starlette +
uvicorn) - run it, smoke-test it against the LLM simulator, redeploy unchanged (no rebuild), pass
the approval gate, then deploy a broken flow (smoke fails, the previous container keeps serving).
A canary secret must reach the running container and nothing else (image, history, records, output).
Skips with the reason when no docker daemon or base image is available (.ci/setup-docker.sh).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from deploy_helpers import copy_classification_and_port, docker_mark, run_cli

from genaiops.cli import main
from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.deploy.audit import audit_log
from genaiops.deploy.targets.base import slug
from genaiops.simulator import SimulatorServer
from genaiops.workspace import Workspace

REASON = dockercli.unavailable_reason()
if REASON is None and dockercli.inspect("image", os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)) is None:
    REASON = f"base image {OFFLINE_BASE_IMAGE} missing (run .ci/setup-docker.sh)"
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900), docker_mark(REASON)]

CANARY = "canary-" + secrets.token_hex(12)
RUN_ID = secrets.token_hex(3)
ENV = f"e2e{RUN_ID}"
ENV_GATED = f"gated{RUN_ID}"
# use case -> its flow folder, the file holding its normalize step (broken in step 4), and where
# its image holds the flow
CASES = {"classification": ("flows/classification/standard", "normalize.py", "/flow"),
         "classification_maf": ("flows/classification/maf", "app.py", "/app/flow")}


def _flow_file(world, name: str | None = None) -> Path:
    folder, normalize, _image_dir = CASES[world["use_case"]]
    return world["root"] / folder / (name or normalize)


def _free_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port < 65000:
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module", params=sorted(CASES))
def world(request, tmp_path_factory):
    """A private repo copy, state dir, simulator requiring the canary key, and full cleanup."""
    use_case = request.param
    image_name = f"genaiops-test/{use_case.replace('_', '-')}-{RUN_ID}"
    root = copy_classification_and_port(tmp_path_factory.mktemp("repo"))
    port, gated_port = _free_pair(), _free_pair()
    (root / f"configs/{use_case}/deployment.yaml").write_text(f"""\
image:
  name: {image_name}
  base_image: {os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)}
smoke:
  request: configs/{use_case}/sample-request.json
  expect_outputs: [category, summary]
environments:
  {ENV}:
    target: docker
    port: {port}
    workers: 1
    threads: 3
  {ENV_GATED}:
    target: docker
    port: {gated_port}
    workers: 1
    requires_approval: true
    approval_ttl_minutes: 5
""")
    state = tmp_path_factory.mktemp("state")
    trust = tmp_path_factory.mktemp("trust")
    saved = {k: os.environ.get(k) for k in ("GENAIOPS_STATE_DIR", "LLM_API_KEY", "GENAIOPS_WHEEL_CACHE",
                                            "GENAIOPS_TRUST_DIR", "GENAIOPS_AUDIT_KEY")}
    os.environ.pop("GENAIOPS_AUDIT_KEY", None)
    os.environ.update(GENAIOPS_STATE_DIR=str(state), LLM_API_KEY=CANARY, GENAIOPS_TRUST_DIR=str(trust),
                      GENAIOPS_WHEEL_CACHE="/tmp/genaiops-test-wheels")
    assert main(["--repo", str(root), "audit", "init"]) == 0
    sim = SimulatorServer(rules_path=root / "configs/classification/simulator.yaml", api_key=CANARY).start()
    try:
        yield {"root": root, "state": state, "trust": trust, "sim": sim, "port": port,
               "use_case": use_case, "deployment": slug(use_case, ENV), "image_name": image_name}
    finally:
        sim.stop()
        for env in (ENV, ENV_GATED):
            ids = dockercli.text("ps", "-aq", "--filter", f"label=io.genaiops.deployment={slug(use_case, env)}")
            if ids:
                dockercli.docker("rm", "-f", *ids.split(), check=False)
        tags = dockercli.text("images", "-q", image_name).split()
        if tags:
            dockercli.docker("rmi", "-f", *sorted(set(tags)), check=False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _deploy(world, env, capsys) -> tuple[int, dict, str]:
    code, stdout, stderr = run_cli(["--repo", str(world["root"]), "run", "deploy", "-u", world["use_case"],
                                    "-e", env, "--variant", "classify.careful", "--simulator-url",
                                    world["sim"].url, "--json"], capsys)
    return code, json.loads(stdout), stdout + stderr


def _score(port: int) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/score", method="POST",
                                 data=json.dumps({"text": "I forgot my password"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


def _scan_for(value: bytes, *chunks_sources) -> list[str]:
    return [name for name, data in chunks_sources if value in data]


def test_docker_end_to_end(world, capsys):
    outputs = []
    started = time.monotonic()
    # 1. first deploy: builds the image, runs it, smoke-tests against the simulator
    code, result, text = _deploy(world, ENV, capsys)
    outputs.append(text)
    assert code == 0, text
    image = result["image"]
    assert image["built"] is True
    assert result["outcome"]["smoke"]["ok"] is True
    assert result["outcome"]["smoke"]["outputs"]["category"] == "billing"
    assert result["variant"]["label"] == "summarize.full+classify.careful"
    build_seconds, size_mb = image["build_seconds"], image["size_bytes"] / 1e6
    [scan] = [r["scan"] for r in audit_log(Workspace.for_repo(world["root"])).read()
              if r["event"] == "image_scanned" and r["image"] == image["image_id"]]
    assert scan["ok"] and scan["files"] > 1000 and scan["missing"] == scan["unexpected"] == []
    with capsys.disabled():
        print(f"\nFIGURES {world['use_case']}: image build {build_seconds:.1f}s, size {size_mb:.0f} MB, "
              f"first deploy {time.monotonic() - started:.1f}s, scan {scan['seconds']:.1f}s "
              f"({scan['files']} files, {scan['bytes'] / 1e6:.0f} MB)")
    info = dockercli.inspect("image", image["tag"])
    labels = info["Config"]["Labels"]
    assert labels["io.genaiops.flow_hash"] == result["flow_hash"]
    assert labels["io.genaiops.variant"] == "summarize.full+classify.careful"
    for key in ("summary_digest", "git_commit", "build_id", "artifact_key"):
        assert labels[f"io.genaiops.{key}"]
    assert result["artifact"] == info["Id"]
    live = result["outcome"]["details"]["container"]
    status, body = _score(world["port"])
    assert status == 200 and body["category"] == "account"
    if world["use_case"] == "classification":  # the promptflow image: gunicorn threads, `threads:` a process
        assert "-k gthread" in dockercli.text("top", live) and "--threads 3" in dockercli.text("top", live)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert [s for s, _ in pool.map(lambda _: _score(world["port"]), range(6))] == [200] * 6
    # the canary reached the running container (the simulator only accepts that key) ...
    assert CANARY in json.dumps(dockercli.inspect("container", live)["Config"]["Env"])

    # 2. unchanged redeploy: same image, no build, same container keeps serving
    t0 = time.monotonic()
    code, again, text = _deploy(world, ENV, capsys)
    outputs.append(text)
    assert code == 0, text
    assert again["image"]["built"] is False and again["image"]["image_id"] == image["image_id"]
    assert again["outcome"]["unchanged"] is True
    assert again["outcome"]["details"]["container"] == live
    with capsys.disabled():
        print(f"FIGURES unchanged redeploy {time.monotonic() - t0:.1f}s")

    code, human, err = run_cli(["--repo", str(world["root"]), "run", "deploy", "-u", world["use_case"], "-e", ENV,
                                "--variant", "classify.careful", "--simulator-url", world["sim"].url], capsys)
    outputs.append(human + err)
    assert code == 0 and "reused, not rebuilt" in human and "smoke:    passed" in human

    # 3. protected environment: refused without approval, deploys with one bound to the digest
    code, refused, text = _deploy(world, ENV_GATED, capsys)
    outputs.append(text)
    assert code == 1 and "requires an approval" in refused["error"]
    assert image["image_id"] in refused["hint"]
    code, stdout, stderr = run_cli(["--repo", str(world["root"]), "approve", "-u", world["use_case"], "-e",
                                    ENV_GATED, "--artifact", image["image_id"], "--by", "alice"], capsys)
    outputs.append(stdout + stderr)
    assert code == 0 and "approved" in stdout and "flow_hash" in stdout
    code, gated, text = _deploy(world, ENV_GATED, capsys)
    outputs.append(text)
    assert code == 0, text
    assert gated["approval"]["by"] == "alice" and gated["image"]["built"] is False
    events = [(e["event"], e["env"]) for e in audit_log(Workspace.for_repo(world["root"])).read()]
    assert events[-3:] == [("deploy_refused", ENV_GATED), ("approved", ENV_GATED), ("deployed", ENV_GATED)]

    # 4. broken flow: the smoke test fails, the new container is removed, the old one still serves
    normalize = _flow_file(world)
    assert "    words = re.findall" in normalize.read_text()
    normalize.write_text(normalize.read_text().replace(
        "    words = re.findall", "    raise RuntimeError('deliberately broken flow')\n    words = re.findall"))
    code, broken, text = _deploy(world, ENV, capsys)
    outputs.append(text)
    assert code == 1, text
    assert broken["ok"] is False and broken["image"]["built"] is True
    assert broken["image"]["image_id"] != image["image_id"]
    assert live in broken["outcome"]["message"]  # "... keeps serving"
    running = dockercli.text("ps", "--format", "{{.Names}}", "--filter",
                             f"label=io.genaiops.deployment={world['deployment']}").split()
    assert running == [live]
    status, body = _score(world["port"])
    assert status == 200 and body["category"] == "account"
    records = [r for r in audit_log(Workspace.for_repo(world["root"])).read()
               if r["event"] in ("deployed", "deploy_failed") and r["env"] == ENV]
    assert [r["ok"] for r in records] == [True, True, True, False]

    # 5. canary scan: image history, config and every layer byte; records, logs and all output
    canary = CANARY.encode()
    for tag in (image["tag"], broken["image"]["tag"]):
        history = dockercli.docker("history", "--no-trunc", tag).stdout
        inspect = dockercli.docker("image", "inspect", tag).stdout
        assert canary not in history and canary not in inspect
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        tail, found = b"", False
        for chunk in iter(lambda stream=save.stdout: stream.read(1 << 20), b""):
            found = found or canary in tail + chunk
            tail = chunk[-len(canary):]
        assert save.wait() == 0 and not found
    state_files = [p for p in world["state"].rglob("*") if p.is_file() and not p.name.endswith(".whl")]
    assert state_files
    leaked = [str(p) for p in state_files if canary in p.read_bytes()]
    assert leaked == []
    assert all(CANARY not in text for text in outputs)


def _containers() -> set[str]:
    return set(dockercli.text("ps", "-aq", "--filter", "label=io.genaiops.deployment").split())


def _images(world) -> set[str]:
    return set(dockercli.text("images", "-q", world["image_name"]).split())


def test_a_rejection_cannot_be_cut_off_and_a_tampered_chain_stops_before_any_container(world, capsys):
    """Attacks on the audit chain with real images and containers: nothing is built or started."""
    workspace = Workspace.for_repo(world["root"])
    chain = workspace.audit_log
    normalize = _flow_file(world)
    original = normalize.read_text().replace("    raise RuntimeError('deliberately broken flow')\n", "")
    normalize.write_text(original)  # the flow the gated environment runs
    gated = [r for r in audit_log(workspace).read() if r["event"] == "deployed" and r["env"] == ENV_GATED]
    artifact = gated[-1]["artifact"]
    pristine = None
    try:
        code, out, err = run_cli(["--repo", str(world["root"]), "reject", "-u", world["use_case"], "-e",
                                  ENV_GATED, "--artifact", artifact, "--by", "bob", "--note", "too risky"],
                                 capsys)
        assert code == 0, out + err
        code, refused, _ = _deploy(world, ENV_GATED, capsys)
        assert code == 1 and "rejected" in refused["error"] and "too risky" in refused["error"]
        containers, images = _containers(), _images(world)
        pristine = chain.read_bytes()  # what the anchor vouches for

        # 1. cut the rejection (and everything after it) off the chain: the anchor notices
        lines = chain.read_text().splitlines()
        cut = next(i for i, line in enumerate(lines) if '"event": "rejected"' in line)
        chain.write_text("".join(line + "\n" for line in lines[:cut]))
        code, refused, text = _deploy(world, ENV_GATED, capsys)
        assert code == 1 and "records were removed" in refused["error"], text
        assert _containers() == containers and _images(world) == images

        # 2. edit an old record, with a changed flow that would need a new image and container
        chain.write_bytes(pristine)
        normalize.write_text(original + "# a change that needs a new image and container\n")
        lines = chain.read_text().splitlines()
        name = f'"{world["use_case"]}"'
        assert name in lines[0]
        lines[0] = lines[0].replace(name, name.upper(), 1)
        chain.write_text("".join(line + "\n" for line in lines))
        started = time.monotonic()
        code, refused, text = _deploy(world, ENV, capsys)
        assert code == 1 and "line 1" in refused["error"] and "integrity" in refused["error"], text
        assert time.monotonic() - started < 30  # refused before any build
        assert _containers() == containers and _images(world) == images
        incidents = [json.loads(line) for line in workspace.audit_incidents_log.read_text().splitlines()]
        assert incidents[-1]["event"] == "deploy_refused" and incidents[-1]["env"] == ENV
    finally:
        if pristine is not None:
            chain.write_bytes(pristine)
        normalize.write_text(original)
    assert audit_log(workspace).read()


def test_a_secret_in_the_flow_folder_is_caught_by_the_image_scan(world, capsys):
    """A key committed into the flow folder is in the built image: the post-build scan refuses it,
    again on the next deploy (a kept image is not trusted as clean), and no container starts."""
    notes = _flow_file(world, "notes.txt")
    image_notes = CASES[world["use_case"]][2] + "/notes.txt"
    notes.write_text(f"key for later: {CANARY}\n")
    containers = _containers()
    try:
        for _ in range(2):
            code, refused, text = _deploy(world, ENV, capsys)
            assert code == 1, text
            assert f"a known secret value in: {image_notes}" in refused["error"] and CANARY not in text
            assert "docker rmi" in refused["hint"]
            assert _containers() == containers
    finally:
        notes.unlink()
    scans = [r for r in audit_log(Workspace.for_repo(world["root"])).read() if r["event"] == "image_scanned"]
    assert [s["ok"] for s in scans[-2:]] == [False, False]
    assert scans[-1]["scan"]["secrets_in"] == [image_notes]


def test_missing_base_image_is_a_clear_error(world, capsys, tmp_path):
    root, use_case = world["root"], world["use_case"]
    overlay = root / f"configs/{use_case}/deployment.nobase.yaml"
    config = (root / f"configs/{use_case}/deployment.yaml").read_text()
    base = os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)
    overlay.write_text("image:\n  name: " + world["image_name"] + "\n  base_image: genaiops/does-not-exist:1\n"
                       "environments:\n  nobase:\n    target: docker\n    port: 18999\n")
    try:
        code, _, stderr = run_cli(["--repo", str(root), "run", "deploy", "-u", use_case,
                                   "-e", "nobase"], capsys)
    finally:
        overlay.unlink()
    assert base in config
    assert code == 2
    assert "genaiops/does-not-exist:1" in stderr and "setup-docker.sh" in stderr
    assert "Traceback" not in stderr


def test_setup_script_is_idempotent():
    script = Path(__file__).resolve().parents[1] / ".ci/setup-docker.sh"
    started = time.monotonic()
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout and "building" not in done.stdout
    assert time.monotonic() - started < 30
    assert shutil.which("docker")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("debootstrap") is None,
                    reason="building a base image needs root and debootstrap")
def test_a_failed_base_image_build_leaves_nothing_behind(tmp_path):
    """A debootstrap that fails (here: a mirror nobody answers on) ends the setup with its log's
    tail, and leaves no root filesystem, no mount and no log in the temp folder: nothing a later
    test could walk into."""
    script = Path(__file__).resolve().parents[1] / ".ci/setup-docker.sh"
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(private_tmp), "GENAIOPS_DEBIAN_MIRROR": "http://127.0.0.1:9/debian",
           "GENAIOPS_BASE_IMAGE": f"genaiops/never-built:{os.getpid()}",
           "GENAIOPS_SETUP_LOCK": str(tmp_path / "setup.lock")}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=240, env=env,
                          check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "debootstrap failed" in done.stderr
    assert list(private_tmp.iterdir()) == []
    assert str(private_tmp) not in Path("/proc/mounts").read_text()
