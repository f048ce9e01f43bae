"""The GitHub Actions contract, for releases: `.github/workflows/release.yml` executed as GitHub would
(`github_runner.py`) with the real genaiops, real docker and the real Azure SDKs against the loopback
fakes of the Azure DevOps contract (Azure ML, Blob Storage behind a proxy, the container registry,
the `az` CLI) and the GitHub fake. azure/login signs in only with a federated credential whose
subject is the job's environment; the environments apply their deployment branches and required
review before a job starts (a reviewer hook that reads the Build job's summary).

A push to `main` changing a shared file runs both use cases through Evaluate (dev), Build once (pushed
by digest), Deploy dev of that digest, and Release to prod. classification's reviewer pastes the digest
   from its Build summary: prod gets the digest built, evaluated and deployed to dev in this run.
   qa's reviewer pastes classification's digest (the wrong summary): genaiops refuses (wrong digest),
   nothing reaches qa's prod endpoint, and the refusal is in the uploaded audit chain.

Docker: hold /tmp/genaiops-docker.lock while running it. The pytest step of the checks job is not
executed (it is this suite).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fakes.azureml import FakeAzureML
from fakes.blob import BlobHandler, BlobState
from fakes.github import FakeGitHub
from fakes.proxy import InterceptingProxy
from fakes.registry import USER, FakeRegistry
from fakes.tls import make_ca
from github_runner import Event, Runner
from test_github_contract import _git, _origin, _rules

from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.simulator import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
FAKES_BIN = ROOT / "tests" / "fakes" / "bin"
BASE_IMAGE = os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)
REASON = dockercli.unavailable_reason()
if REASON is None and dockercli.inspect("image", BASE_IMAGE) is None:
    REASON = f"base image {BASE_IMAGE} missing (run .ci/setup-docker.sh)"
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"docker: {REASON}"), pytest.mark.docker,
              pytest.mark.timeout(2400)]

LLM_KEY = "canary-llm-key-" + os.urandom(6).hex()
AUDIT_KEY = os.urandom(32).hex()
ACR_TOKEN = "acr-refresh-token-" + os.urandom(6).hex()
SUB = "7c0ffee0-0000-4000-8000-000000000001"
TENANT = "72f988bf-0000-4000-8000-000000000000"
DEV, PROD = ("rg-genaiops-dev", "mlw-genaiops-dev"), ("rg-genaiops-prod", "mlw-genaiops-prod")
AUTHOR, REVIEWER = "dana-dev", "riley-release"
DIGEST = re.compile(r"Image digest: `(sha256:[0-9a-f]{64})`")  # the line the summary asks reviewers to copy


def _commit(origin: Path, branch: str, rel: str, old: str, new: str, message: str) -> str:
    _git(origin, "checkout", "-q", branch)
    text = (origin / rel).read_text()
    assert old in text
    (origin / rel).write_text(text.replace(old, new, 1))
    _git(origin, "commit", "-qam", message)
    return _git(origin, "rev-parse", "HEAD")


def _push(world, branch: str, sha: str, before: str) -> Event:
    payload = {"ref": f"refs/heads/{branch}", "before": before, "after": sha}
    return Event("push", sha, f"refs/heads/{branch}", payload, AUTHOR)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gh-release")
    ca = make_ca(root / "tls", ["127.0.0.1", "*.blob.core.windows.net"])
    blobs = BlobState()
    docker_config = root / "aml-docker"
    sim = SimulatorServer(rules=_rules(), api_key=LLM_KEY).start()
    registry = FakeRegistry(ACR_TOKEN).start()
    subprocess.run(["docker", "--config", str(docker_config), "login", registry.host, "-u", USER, "--password-stdin"],
                   input=ACR_TOKEN, text=True, capture_output=True, check=True)
    aml = FakeAzureML(ca.server_context(), sub=SUB, rg=DEV[0], ws=DEV[1], run_containers=True,
                      docker_env={"DOCKER_CONFIG": str(docker_config)}).start()
    aml.add_workspace(SUB, *PROD)
    for workspace in aml.workspaces.values():
        workspace.connections["llm"] = {"credentials": {"key": LLM_KEY}}
    proxy = InterceptingProxy({"*.blob.core.windows.net": (BlobHandler, blobs)}, ca.server_context()).start()
    github = FakeGitHub().start()
    llm = {"LLM_API_TYPE": "open_ai", "LLM_API_BASE": f"{sim.url}/v1", "LLM_API_VERSION": "2024-06-01"}
    azure = {"AZURE_SUBSCRIPTION_ID": SUB, "AZURE_TENANT_ID": TENANT, "GENAIOPS_IMAGE_REGISTRY": registry.host,
             "GENAIOPS_RUNTIME_BACKEND": "local"}
    secrets = {"LLM_API_KEY": LLM_KEY, "GENAIOPS_AUDIT_KEY": AUDIT_KEY}
    world = {"root": root, "aml": aml, "registry": registry, "github": github, "runs": [], "reviews": []}

    def reviewer(runner, job_name):
        """A prod reviewer reads the Build job summary of this use case and pastes its digest;
        `paste_from` (use case -> use case) makes one paste another use case's digest."""
        use_case = job_name.split(" ")[1].strip("()")
        source = world.get("paste_from", {}).get(use_case, use_case)
        [summary] = [text for name, text in runner.result.summaries.items()
                     if name.startswith(f"release ({source})") and name.endswith("build")]
        digest = DIGEST.search(summary).group(1)
        world["reviews"].append((use_case, digest))
        return REVIEWER, f"gates pass, approving {digest}"

    environments = {
        "dev": {"vars": {**azure, "AZURE_CLIENT_ID": "client-dev", "AZURE_RESOURCE_GROUP": DEV[0],
                         "AZUREML_WORKSPACE_NAME": DEV[1], "GENAIOPS_BASE_IMAGE": BASE_IMAGE},
                "secrets": secrets, "branches": ["development", "main"]},
        "prod": {"vars": {**azure, "AZURE_CLIENT_ID": "client-prod", "AZURE_RESOURCE_GROUP": PROD[0],
                          "AZUREML_WORKSPACE_NAME": PROD[1]},
                 "secrets": secrets, "branches": ["main"], "prevent_self_review": True, "review": reviewer},
    }
    login = {"subscription": SUB, "tenant": TENANT, "acr_token": ACR_TOKEN}
    federated = {f"repo:contoso/genai-ops:environment:{env}": {
        "client_id": f"client-{env}", "login": {**login, "arm_token": f"arm-{env}-" + os.urandom(4).hex()}}
        for env in ("dev", "prod")}
    machine = {
        "PATH": os.pathsep.join([str(FAKES_BIN), "/usr/local/bin", "/usr/bin", "/bin"]), "LANG": "C.UTF-8",
        "REQUESTS_CA_BUNDLE": str(ca.ca_pem), "SSL_CERT_FILE": str(ca.ca_pem), "HTTPS_PROXY": proxy.url,
        "NO_PROXY": "127.0.0.1,localhost", "AZUREML_DEV_URL_MFE": aml.url,
        "GENAIOPS_WHEEL_CACHE": "/tmp/genaiops-test-wheels",
        "PIP_CONFIG_FILE": os.environ.get("PIP_CONFIG_FILE", "/etc/pip.conf"),
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    origin = _origin(root)
    world["origin"] = origin
    world["runner"] = Runner(origin=origin, github=github, variables=dict(llm), secrets={"LLM_API_KEY": LLM_KEY},
                             machine_env=machine, venv=ROOT / ".venv", workdir=root / "runner",
                             skip_steps={"Unit and end-to-end tests (pytest)": "it is the suite running this test"},
                             environments=environments, federated=federated)
    try:
        yield world
    finally:
        for server in (github, registry, sim, proxy, aml):
            server.stop()
        for name in {r[0] for r in registry.pushed}:
            ids = dockercli.text("images", "-q", f"{registry.host}/{name}").split()
            if ids:
                dockercli.docker("rmi", "-f", *sorted(set(ids)), check=False)


def _run(world, event):
    result = world["runner"].run(world["runner"].origin / ".github/workflows/release.yml", event)
    world["runs"].append(result)
    print(f"\nFIGURES run {result.run_id}: {result.jobs}\n{result.timings()}")
    return result


def _deployments(world, workspace, endpoint):
    ws = next(w for w in world["aml"].workspaces.values() if w.name == workspace)
    return {name: d for (e, name), d in ws.deployments.items() if e == endpoint}


def _image(world, workspace, deployment) -> str:
    ws = next(w for w in world["aml"].workspaces.values() if w.name == workspace)
    return world["aml"].image_of_deployment(ws, deployment)


def _evidence(result, use_case) -> dict:
    [name] = [n for n in result.artifacts if n.startswith(f"evidence-{use_case}-")]
    return json.loads((result.artifacts[name] / "evidence.json").read_text())


@pytest.fixture(scope="module")
def release(world):
    origin = world["origin"]
    before = _git(origin, "rev-parse", "main")
    sha = _commit(origin, "main", "Makefile", "PYTHON ?= python3", "PYTHON ?= python3  # release", "D: shared change")
    world["paste_from"] = {"qa": "classification"}  # qa's reviewer pastes the wrong summary's digest
    return _run(world, _push(world, "main", sha, before))


def test_main_releases_the_digest_built_once_and_refuses_an_approval_of_another_digest(world, release):
    result = release
    assert result.jobs["release (classification) / deploy-dev / deploy"] == "success", result.failures()
    evidence = _evidence(result, "classification")
    assert [p[2] for p in world["registry"].pushed if p[0] == "genaiops/classification"] == [evidence["image"]["digest"]]
    digest, reference = evidence["image"]["digest"], evidence["image"]["repository"] + "@" + evidence["image"]["digest"]
    assert result.jobs["release (classification) / deploy-prod / deploy"] == "success", result.failures()
    [(_, prod)] = _deployments(world, PROD[1], "classification-prod").items()
    [(_, dev)] = _deployments(world, DEV[1], "classification-dev").items()
    assert _image(world, PROD[1], prod) == _image(world, DEV[1], dev) == reference
    assert ("classification", digest) in world["reviews"]
    prod_log = result.output("release (classification) / deploy-prod / deploy")
    assert "approval: github by riley-release" in prod_log and "docker build" not in prod_log
    # qa: the approval names classification's digest - refused before anything reached prod
    assert result.jobs["release (qa) / deploy-prod / deploy"] == "failure"
    qa_log = result.output("release (qa) / deploy-prod / deploy")
    assert f"names {digest}, not {_evidence(result, 'qa')['image']['digest']}: wrong digest" in qa_log
    assert _deployments(world, PROD[1], "qa-prod") == {}
    [audit] = [n for n in result.artifacts if n.startswith("deploy-prod-qa-")]
    chain = [json.loads(line) for line in (result.artifacts[audit] / "audit" / "audit.jsonl").read_text().splitlines()]
    assert chain[-1]["event"] == "deploy_refused" and "wrong digest" in chain[-1]["reason"]
    [ok] = [n for n in result.artifacts if n.startswith("deploy-prod-classification-")]
    record = json.loads((result.artifacts[ok] / "audit" / "audit.jsonl").read_text().splitlines()[-1])
    assert record["event"] == "deployed" and record["approval"]["by"] == REVIEWER
    assert record["approval"]["source"] == "github" and record["artifact"] == digest


def test_no_secret_in_logs_summaries_or_artifacts(world, release):
    for secret in (LLM_KEY, AUDIT_KEY):
        for result in world["runs"]:
            assert secret not in result.output()
            assert all(secret not in text for text in result.summaries.values())
            for folder in result.artifacts.values():
                for path in folder.rglob("*"):
                    if path.is_file():
                        assert secret.encode() not in path.read_bytes(), path
