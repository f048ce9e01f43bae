"""The pipeline contract: `azure-pipelines.yml`, expanded for each trigger of the branch model and
executed the way the Azure Pipelines agent would (`pipeline_agent.py`), with the real genaiops, real
docker and the real Azure SDKs against loopback fakes (`fakes/`).

Five runs of one project, in order:
1. push to `development` changing the classification flow: Checks, then Dev_classification and
   DeployDev_classification only (qa was deployed to dev at this commit's parent and did not change) -
   evaluate (dev overlay: datasets and flow registered in the Azure ML fake, blobs uploaded through
   the Blob fake), build the image once and push it by digest after `az acr login`, deploy that
   digest to the dev endpoint, whose container the Azure ML fake pulls and runs with the LLM key
   from secret injection; the run is tagged deployed-dev-classification;
2. pull request into `development` changing classification's config: PR_classification only, its
   regression gate judged against the summary deployed in (1) on the same 46 rows;
3. pull request that makes the flow worse (shipping tickets become "other"): the regression gate
   fails and so does the PR;
4. push to `main` (a shared file changed): both use cases through Dev, DeployDev, Approve and Prod.
   classification's approval is left pending while qa is approved and deployed (approval and deploy
   are separate stages, so classification's wait holds no `prod` lock), then approved. qa's
   environment approval is given by the change's author - the environment (misconfigured) lets
   them, genaiops refuses: Prod_qa fails. The digest each approver saw is the digest deployed to dev
   and to prod, built once; the prod audit record names the approver. Two days later "Rerun
   failed jobs" with a release approver's environment approval is still refused: the digest's
   approval has expired;
5. push to `main` touching neither use case: classification (released in 4) is skipped, qa (whose
   release failed in 4) is released now, approved by a release approver.

What the network looks like to the processes under test (documented emulation, not pipeline
configuration): `AZUREML_DEV_URL_MFE` and `REQUESTS_CA_BUNDLE` reach the HTTPS Azure ML fake,
`HTTPS_PROXY` sends `*.blob.core.windows.net` to the Blob fake (everything else is tunnelled),
`az` is the fake CLI, `SYSTEM_COLLECTIONURI` is the Azure DevOps fake, the "Azure OpenAI" endpoint of
the variable groups is the LLM simulator requiring the group's key. Deviations from a hosted agent,
each because this machine cannot do it: GENAIOPS_BASE_IMAGE is the offline base image (no registry
to pull python:3.11-slim from), GENAIOPS_RUNTIME_BACKEND=local (no Azure ML compute; the variable
group documents `azure`), the pytest and docker-setup steps of Checks are not executed (the first
is this suite, which needs the second done), pip and wheel caches are the machine's.

Docker: hold /tmp/genaiops-docker.lock while running it (see the README). GENAIOPS_CONTRACT_SOURCE=DIR
runs the contract against another tree's pipeline and configs (e.g. `git archive main` unpacked, with
PYTHONPATH=DIR/src for its code): how this test was seen to fail before the fix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pipeline_schema as ps
import pytest
import yaml
from deploy_helpers import docker_mark
from fakes.ado import FakeAzureDevOps
from fakes.azureml import FakeAzureML
from fakes.blob import BlobHandler, BlobState
from fakes.proxy import InterceptingProxy
from fakes.registry import USER, FakeRegistry
from fakes.tls import make_ca
from pipeline_agent import Agent, Decision, Trigger
from pipeline_docs import documented_variables

from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.simulator import SimulatorServer

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("GENAIOPS_CONTRACT_SOURCE") or REPO)  # the pipeline and configs under test
FAKES_BIN = Path(__file__).resolve().parent / "fakes" / "bin"
BASE_IMAGE = os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)

REASON = dockercli.unavailable_reason()
if REASON is None and dockercli.inspect("image", BASE_IMAGE) is None:
    REASON = f"base image {BASE_IMAGE} missing (run .ci/setup-docker.sh)"
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800), docker_mark(REASON)]

LLM_KEY = "canary-llm-key-" + os.urandom(6).hex()
AUDIT_KEY = os.urandom(32).hex()
ACR_TOKEN = "acr-refresh-token-" + os.urandom(6).hex()
SUB = "7c0ffee0-0000-4000-8000-000000000001"
DEV = ("rg-genaiops-dev", "mlw-genaiops-dev")
PROD = ("rg-genaiops-prod", "mlw-genaiops-prod")
AUTHOR = "dana.dev@contoso.com"
APPROVER = "riley.release@contoso.com"
SKIPPED_STEPS = {"Unit and end-to-end tests (pytest)": "it is the suite running this test",
                 "Docker and the offline base image (.ci/setup-docker.sh)":
                     "this test needs docker and the base image already (it skips or fails without them); "
                     "the step would install packages on the test machine"}
PARITY_STEPS = ("Parity classification_maf vs classification", "Publish the parity gate (JUnit)",
                "Publish the parity report")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": AUTHOR, "GIT_COMMITTER_NAME": "Dana",
           "GIT_COMMITTER_EMAIL": AUTHOR}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def _origin(root: Path) -> Path:
    """The project's repository: this checkout's files (committed or not) as commit A on both
    development and main."""
    origin = root / "origin"
    origin.mkdir()
    if (SOURCE / ".git").exists():
        files = subprocess.run(["git", "-C", str(SOURCE), "ls-files", "--cached", "--others", "--exclude-standard",
                                "-z"], capture_output=True, check=True).stdout.decode().split("\0")
    else:
        files = [str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*") if p.is_file() and ".venv" not in p.parts]
    for rel in filter(None, files):
        source = SOURCE / rel
        if source.is_file():
            (origin / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, origin / rel)
    _git(origin, "init", "-q", "-b", "main")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "A: the project")
    _git(origin, "branch", "development")
    return origin


def _commit(origin: Path, branch: str, edits: dict[str, tuple[str, str]], message: str) -> str:
    _git(origin, "checkout", "-q", branch)
    for rel, (old, new) in edits.items():
        path = origin / rel
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new, 1))
    _git(origin, "commit", "-qam", message)
    return _git(origin, "rev-parse", "HEAD")


def _simulator_rules() -> dict:
    """One LLM endpoint for the project (as one Azure OpenAI deployment would be): both samples' rules."""
    merged = {"default_reply": "no rule matches", "tables": {}, "rules": []}
    for use_case in ("classification", "qa"):
        data = yaml.safe_load((SOURCE / f"configs/{use_case}/simulator.yaml").read_text())
        merged["tables"].update(data.get("tables") or {})
        merged["rules"].extend(data.get("rules") or [])
    return merged


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    ca = make_ca(root / "tls", ["127.0.0.1", "*.blob.core.windows.net"])
    blobs = BlobState()
    docker_config = root / "aml-docker"  # the workspaces' pull identity (AcrPull on the registry)
    sim = SimulatorServer(rules=_simulator_rules(), api_key=LLM_KEY).start()
    registry = FakeRegistry(ACR_TOKEN).start()
    subprocess.run(["docker", "--config", str(docker_config), "login", registry.host, "-u", USER,
                    "--password-stdin"], input=ACR_TOKEN, text=True, capture_output=True, check=True)
    aml = FakeAzureML(ca.server_context(), sub=SUB, rg=DEV[0], ws=DEV[1], run_containers=True,
                      docker_env={"DOCKER_CONFIG": str(docker_config)}).start()
    aml.add_workspace(SUB, *PROD)
    for workspace in aml.workspaces.values():
        workspace.connections["llm"] = {"credentials": {"key": LLM_KEY}}
    proxy = InterceptingProxy({"*.blob.core.windows.net": (BlobHandler, blobs)}, ca.server_context()).start()
    ado = FakeAzureDevOps().start()
    origin = _origin(root)
    llm = {"LLM_API_TYPE": "open_ai", "LLM_API_BASE": f"{sim.url}/v1", "LLM_API_VERSION": "2024-06-01",
           "LLM_API_KEY": LLM_KEY}
    azure = {"AZURE_SUBSCRIPTION_ID": SUB, "GENAIOPS_IMAGE_REGISTRY": registry.host, "GENAIOPS_RUNTIME_BACKEND": "local",
             "GENAIOPS_AUDIT_KEY": AUDIT_KEY}
    groups = {
        "genaiops-pr": dict(llm),
        "genaiops-dev": {**llm, **azure, "AZURE_RESOURCE_GROUP": DEV[0], "AZUREML_WORKSPACE_NAME": DEV[1],
                         "GENAIOPS_BASE_IMAGE": BASE_IMAGE},
        "genaiops-prod": {**llm, **azure, "AZURE_RESOURCE_GROUP": PROD[0], "AZUREML_WORKSPACE_NAME": PROD[1],
                          "releaseApprovers": f"{APPROVER},{AUTHOR}"},  # the author is an approver too
    }
    machine = {
        "PATH": os.pathsep.join([str(FAKES_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8", "REQUESTS_CA_BUNDLE": str(ca.ca_pem), "SSL_CERT_FILE": str(ca.ca_pem),
        "HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost",
        "AZUREML_DEV_URL_MFE": aml.url, "GENAIOPS_WHEEL_CACHE": "/tmp/genaiops-test-wheels",
        "PIP_CONFIG_FILE": os.environ.get("PIP_CONFIG_FILE", "/etc/pip.conf"),
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
        # the genaiops under test: the venv `make setup` built may be shared by several checkouts
        "PYTHONPATH": str(SOURCE / "src"),
    }
    decisions: dict[str, list[Decision]] = {}
    world = {"root": root, "origin": origin, "aml": aml, "registry": registry, "ado": ado, "blobs": blobs,
             "proxy": proxy, "sim": sim, "groups": groups, "decisions": decisions, "seen": []}

    def approver(validation, call):
        world["seen"].append((validation.stage, call, validation.instructions))
        queue = decisions.get((validation.stage, validation.kind)) or [Decision("approved", APPROVER)]
        hook = world.get("on_approval")
        if hook:
            hook(validation, call)
        return queue[min(call, len(queue) - 1)]

    world["agent"] = Agent(
        origin=origin, ado=ado, variable_groups=groups, secret_variables={"LLM_API_KEY", "GENAIOPS_AUDIT_KEY"},
        service_connections={name: {"arm_token": "arm-" + os.urandom(6).hex(), "subscription": SUB,
                                    "tenant": "72f988bf-0000-4000-8000-000000000000", "acr_token": ACR_TOKEN}
                             for name in ("genaiops-azure-dev", "genaiops-azure-prod")},
        machine_env=machine, venv=REPO / ".venv", workdir=root / "agent", approver=approver,
        skip_steps=SKIPPED_STEPS,
        # docs/azure-devops.md §5; prod's "approvers can't approve their own runs" is left off here so
        # that genaiops' own check of the author is what refuses (run 4)
        environments={"dev": {"exclusive_lock": True},
                      "prod": {"exclusive_lock": True, "approvers": [APPROVER, AUTHOR], "allow_own_runs": True,
                               "group": "[GenAI Ops]\\Release Approvers",
                               "instructions": "Approve the release shown in this run's Approve stage"}})
    world["pipeline"] = ps.expand_pipeline(SOURCE / "azure-pipelines.yml").pipeline
    # an earlier run of this pipeline that deployed qa to dev at commit A: what the change detection
    # compares qa with (classification was never deployed, so it runs; qa runs only when it changed)
    earlier = ado.new_run("refs/heads/development", "IndividualCI", AUTHOR, _git(origin, "rev-parse", "HEAD"))
    earlier.tags.append("deployed-dev-qa")
    earlier.timeline.append({"id": "earlier-dev-qa", "parentId": None, "type": "Stage", "identifier": "DeployDev_qa",
                             "name": "CI to dev qa", "state": "completed", "result": "succeeded"})
    ado.finish(earlier, "succeeded")
    try:
        yield world
    finally:
        for server in (ado, registry, sim, proxy, aml):
            server.stop()
        names = {r[0] for r in registry.pushed}
        for name in names:
            ids = dockercli.text("images", "-q", f"{registry.host}/{name}").split()
            if ids:
                dockercli.docker("rmi", "-f", *sorted(set(ids)), check=False)


def _run(world, trigger: Trigger):
    result = world["agent"].run(world["pipeline"], trigger)
    world.setdefault("runs", []).append(result)
    print(f"\nFIGURES run {result.run.id} ({trigger.branch}): {result.run.result}\n{result.timings()}")
    return result


def _ran(result) -> set[str]:
    return {name for name, outcome in result.stages.items() if outcome != "Skipped"}


def _evidence(result, use_case) -> dict:
    [name] = [n for n in result.run.artifacts if n.startswith(f"evidence-{use_case}-")]
    return json.loads((result.run.artifacts[name] / "evidence.json").read_text())


def _deployments(world, workspace, endpoint):
    ws = next(w for w in world["aml"].workspaces.values() if w.name == workspace)
    return {name: d for (e, name), d in ws.deployments.items() if e == endpoint}


def _image_of(world, workspace, deployment) -> str:
    ws = next(w for w in world["aml"].workspaces.values() if w.name == workspace)
    return world["aml"].image_of_deployment(ws, deployment)


def test_the_variable_groups_are_the_documented_ones(world):
    """The fixture is what docs/azure-devops.md tells a user to create, nothing more or less."""
    documented = documented_variables()
    for group, values in world["groups"].items():
        env = group.removeprefix("genaiops-")
        required = {n for n, d in documented.items() if env in d.groups and not d.optional}
        allowed = {n for n, d in documented.items() if env in d.groups}
        assert required <= set(values) <= allowed, group
        assert {n for n in values if documented[n].secret} <= world["agent"].secret_variables


# -- 1. push to development ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_push(world):
    commit = _commit(world["origin"], "development", {
        "flows/classification/standard/normalize.py": ("import re", "import re  # normalise before classifying")},
        "C: classification flow")
    return _run(world, Trigger("refs/heads/development", commit, requested_for=AUTHOR))


def test_push_to_development_builds_once_and_deploys_the_digest_to_dev(world, dev_push):
    result = dev_push
    assert result.run.result == "succeeded", result.failures()
    assert _ran(result) == {"Checks", "Dev_classification", "DeployDev_classification"}  # qa did not change
    assert result.jobs[("DeployDev_classification", "Deploy")] == "Succeeded"
    evidence = _evidence(result, "classification")
    digest, reference = evidence["image"]["digest"], evidence["image"]["repository"] + "@" + evidence["image"]["digest"]
    assert reference.startswith(world["registry"].host + "/genaiops/classification@sha256:")
    pushes = [p for p in world["registry"].pushed if p[0] == "genaiops/classification"]
    assert [p[2] for p in pushes] == [digest]  # pushed once, by the Build job
    [(name, deployment)] = _deployments(world, DEV[1], "classification-dev").items()
    assert _image_of(world, DEV[1], deployment) == reference  # by digest, never a tag
    env = deployment["properties"]["environmentVariables"]
    assert env["LLM_API_KEY"] == "${{azureml://connections/llm/credentials/key}}"
    assert LLM_KEY not in json.dumps(deployment)
    assert "deployed-dev-classification" in result.run.tags
    # datasets and the flow went to the dev workspace, their bytes through the Blob fake
    dev_ws = world["aml"].workspaces[next(p for p, w in world["aml"].workspaces.items() if w.name == DEV[1])]
    assert ("data", "tickets") in dev_ws.assets and ("models", "classification-flow") in dev_ws.assets
    assert any(name.endswith("tickets.jsonl") for name in world["blobs"].names())
    # the audit chain (scan, deployment record) survives the agent
    [record_artifact] = [n for n in result.run.artifacts if n.startswith("deploy-dev-classification-")]
    chain = [json.loads(line) for line in
             (result.run.artifacts[record_artifact] / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in chain] == ["image_scanned", "deployed"]
    assert chain[-1]["artifact"] == digest and chain[-1]["ok"] is True
    assert result.implicit_downloads == []


# -- 2. pull request into development ------------------------------------------------------------

@pytest.fixture(scope="module")
def pull_request(world, dev_push):
    origin = world["origin"]
    _git(origin, "checkout", "-q", "-b", "feature/wording", "development")
    _commit(origin, "feature/wording", {"configs/classification/experiment.yaml": (
        "description: >-", "description: >-\n  (wording)")}, "B: classification description")
    _git(origin, "checkout", "-q", "development")
    _git(origin, "checkout", "-q", "--detach")
    _git(origin, "merge", "-q", "--no-ff", "-m", "Merge PR 1 into development", "feature/wording")
    merge = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "development")
    return _run(world, Trigger("refs/pull/1/merge", merge, reason="PullRequest",
                               target_branch="refs/heads/development", requested_for=AUTHOR))


def test_pull_request_into_development_is_validated_against_the_dev_deployment(world, pull_request):
    result = pull_request
    assert result.run.result == "succeeded", result.failures()
    assert _ran(result) == {"Checks", "PR_classification", "Parity_classification_maf"}  # parity: every PR
    [parity] = [n for n in result.run.artifacts if n.startswith("parity-classification_maf-")]
    assert json.loads((result.run.artifacts[parity] / "comparison.json").read_text())["verdict"] == "pass"
    [report] = [n for n in result.run.artifacts if n.startswith("report-pr-classification-")]
    summary = json.loads((result.run.artifacts[report] / "summary.json").read_text())
    dev_evidence = _evidence(world["runs"][0], "classification")
    assert summary["baseline"] and summary["baseline"]["digest"] == dev_evidence["summary_digest"]
    [regression] = [g for g in summary["gates"] if g["type"] == "regression"]  # issue 21.1: judged
    assert regression["status"] == "pass" and "over 46 pairs" in regression["message"], regression
    assert not result.azure_cli_steps  # PR validation needs no Azure access


@pytest.fixture(scope="module")
def worse_pull_request(world, pull_request):
    origin = world["origin"]
    _git(origin, "checkout", "-q", "-b", "feature/worse", "development")
    _commit(origin, "feature/worse", {"flows/classification/standard/normalize.py": (
        '"account", "shipping", "other")', '"account", "other")')}, "E: shipping is no longer a category")
    _git(origin, "checkout", "-q", "development")
    _git(origin, "checkout", "-q", "--detach")
    _git(origin, "merge", "-q", "--no-ff", "-m", "Merge PR 2 into development", "feature/worse")
    merge = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "development")
    # the parity stage ran (and was checked) in run 2; this run is about the regression gate, and
    # comparing both engines over the full datasets again would only repeat run 2's work
    skipped = {step: "ran in run 2" for step in PARITY_STEPS}
    world["agent"].skip_steps.update(skipped)
    try:
        return _run(world, Trigger("refs/pull/2/merge", merge, reason="PullRequest",
                                   target_branch="refs/heads/development", requested_for=AUTHOR))
    finally:
        for step in skipped:
            del world["agent"].skip_steps[step]


def test_a_real_regression_fails_the_pull_request(world, worse_pull_request):
    result = worse_pull_request
    assert _ran(result) == {"Checks", "PR_classification", "Parity_classification_maf"}
    assert {log.step for log in result.logs if log.stage == "Parity_classification_maf"
            and log.output.startswith("not executed by the emulation: ran in run 2")} == set(PARITY_STEPS)
    assert result.stages["PR_classification"] == "Failed" and result.run.result == "failed"
    [report] = [n for n in result.run.artifacts if n.startswith("report-pr-classification-")]
    summary = json.loads((result.run.artifacts[report] / "summary.json").read_text())
    [regression] = [g for g in summary["gates"] if g["type"] == "regression"]
    assert regression["status"] == "fail" and "regression:" in regression["message"], regression
    assert summary["verdict"] == "fail"


# -- 3. push to main: the release -----------------------------------------------------------------

@pytest.fixture(scope="module")
def release(world, worse_pull_request):
    origin = world["origin"]
    _git(origin, "checkout", "-q", "main")
    _git(origin, "merge", "-q", "--no-ff", "-m", "Merge development", "development")
    commit = _commit(origin, "main", {"Makefile": ("PYTHON ?= python3", "PYTHON ?= python3  # release")},
                     "D: shared change")
    decisions = world["decisions"]
    decisions[("Approve_classification", "manual_validation")] = [Decision("defer"), Decision("approved", APPROVER)]
    decisions[("Prod_qa", "environment")] = [Decision("approved", AUTHOR)]  # the author approves their own change

    def when_classification_is_decided(validation, call):
        if validation.stage == "Approve_classification" and call == 1:
            world["qa_prod_before_classification"] = world["agent"].result.jobs.get(("Prod_qa", "Deploy"))
    world["on_approval"] = when_classification_is_decided
    return _run(world, Trigger("refs/heads/main", commit, requested_for=AUTHOR))


def _prod_chain(result, use_case, attempt: int | None = None) -> list[dict]:
    """The audit chain a prod deploy job published (that attempt, or the latest)."""
    names = sorted((n for n in result.run.artifacts if n.startswith(f"deploy-prod-{use_case}-")),
                   key=lambda n: int(n.rsplit("-", 1)[1]))
    name = f"deploy-prod-{use_case}-{attempt}" if attempt else names[-1]
    return [json.loads(line) for line in (result.run.artifacts[name] / "audit" / "audit.jsonl").read_text().splitlines()]


def _check_release(world, result, use_case):
    evidence = _evidence(result, use_case)
    reference = evidence["image"]["repository"] + "@" + evidence["image"]["digest"]
    [validation] = [v for v in result.validations if v.stage == f"Approve_{use_case}"]
    assert validation.decision.approver == APPROVER
    assert evidence["image"]["digest"] in validation.instructions  # the approver saw the digest ...
    assert "verdict pass" in validation.instructions and evidence["flow_hash"][:19] in validation.instructions
    [(_, dev)] = _deployments(world, DEV[1], f"{use_case}-dev").items()
    [(_, prod)] = _deployments(world, PROD[1], f"{use_case}-prod").items()
    assert _image_of(world, PROD[1], prod) == reference  # ... and it is the digest deployed to prod
    assert _image_of(world, DEV[1], dev) == reference  # the one smoke-tested in dev
    pushes = [p for p in world["registry"].pushed if p[0] == f"genaiops/{use_case}" and p[2] ==
              evidence["image"]["digest"]]
    assert pushes, "the deployed digest was pushed by a Build job"
    assert f"deployed-prod-{use_case}" in result.run.tags
    prod_log = result.output("Prod_" + use_case, "Deploy")
    assert "not rebuilt" in prod_log and "docker build" not in prod_log
    [deployed] = [r for r in _prod_chain(result, use_case) if r["event"] == "deployed"]
    approval = deployed["approval"]  # issue 21.3: who approved, from Azure DevOps' own record
    assert approval["source"] == "azure_devops" and approval["by"] == APPROVER, approval
    assert approval["approval_stage"] == f"Approve_{use_case}" and approval["at"]


def test_main_releases_the_approved_digest_built_once(world, release):
    result = release
    assert _ran(result) == {"Checks", "Dev_classification", "DeployDev_classification", "Dev_qa", "DeployDev_qa",
                            "Approve_classification", "Prod_classification", "Approve_qa", "Prod_qa"}, result.failures()
    assert result.stages["Prod_classification"] == "Succeeded", result.failures()
    _check_release(world, result, "classification")
    # qa was approved and deployed while classification's approval was still pending: the approval
    # stage holds no environment, so no Exclusive lock (issue 21.5)
    assert world["qa_prod_before_classification"] == "Failed", "qa's deploy waited for classification's approval"
    assert result.lock_waits == []


def test_an_approval_by_the_change_s_author_is_refused(world, release):
    """Issue 21.3: the environment let the author approve qa; genaiops reads who did and refuses."""
    result = release
    assert result.stages["Prod_qa"] == "Failed" and result.run.result == "failed"
    assert "who requested this run or authored the change" in result.output("Prod_qa", "Deploy")
    assert [r["event"] for r in _prod_chain(result, "qa", attempt=1)][-1] == "deploy_refused"
    assert not _deployments(world, PROD[1], "qa-prod") and "deployed-prod-qa" not in result.run.tags


@pytest.fixture(scope="module")
def late_rerun(world, release):
    """Two days later someone clicks "Rerun failed jobs" on the release; a release approver now
    approves the environment check. The ManualValidation of Approve_qa is not rerun: it is two days old."""
    world["decisions"].clear()
    world["on_approval"] = None
    Agent.time_passes(world["ado"], release, timedelta(days=2))
    return world["agent"].rerun_failed_jobs(world["pipeline"], release)


def test_rerunning_the_failed_deploy_days_later_needs_a_fresh_approval(world, late_rerun):
    """Issue 21.6: approval_ttl_minutes holds for Azure DevOps approvals."""
    result = late_rerun
    assert result.stages["Prod_qa"] == "Failed" and result.jobs[("Prod_qa", "Deploy")] == "Failed"
    assert "expired (valid 60 minutes)" in result.output("Prod_qa", "Deploy")
    assert [r["event"] for r in _prod_chain(result, "qa", attempt=2)][-1] == "deploy_refused"
    assert not _deployments(world, PROD[1], "qa-prod")


@pytest.fixture(scope="module")
def next_release(world, release):
    world["decisions"].clear()
    world["on_approval"] = None
    commit = _commit(world["origin"], "main", {"configs/classification_maf/sample-request.json": ("{", "{ ")},
                     "F: another pipeline's use case")
    return _run(world, Trigger("refs/heads/main", commit, requested_for=AUTHOR))


def test_a_failed_release_is_released_by_the_next_push(world, next_release):
    """Issue 21.2: this push touches neither use case; qa's last release failed, so qa runs again."""
    result = next_release
    assert result.run.result == "succeeded", result.failures()
    assert _ran(result) == {"Checks", "Dev_qa", "DeployDev_qa", "Approve_qa", "Prod_qa"}
    assert "classification: unchanged since" in result.output("Checks", "Changes")
    _check_release(world, result, "qa")


def test_no_secret_in_logs_deployments_or_artifacts(world, release):
    for secret in (LLM_KEY, AUDIT_KEY):
        for result in world["runs"]:
            assert secret not in result.output()
            for folder in result.run.artifacts.values():
                for path in folder.rglob("*"):
                    if path.is_file():
                        assert secret.encode() not in path.read_bytes(), path
        for workspace in world["aml"].workspaces.values():
            assert secret not in json.dumps(list(workspace.deployments.values()))


def test_every_azure_step_keeps_its_session_and_deploy_jobs_download_nothing_implicitly(world, release):
    steps = [s for r in world["runs"] for s in r.azure_cli_steps]
    assert steps and all(s["keepAzSessionActive"] == "true" for s in steps)
    assert all(r.implicit_downloads == [] for r in world["runs"])
    caches = [c for r in world["runs"] for c in r.cache_steps]
    assert caches and all("pyproject.toml" in c["key"] for c in caches)
    names = [n for r in world["runs"] for n in r.run.artifacts]
    assert all(re.search(r"-\d+$", n) for n in names), names  # one name per job attempt
