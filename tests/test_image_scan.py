"""The post-build image scan against real images (tiny ones built FROM the offline base image):
files under /flow must be exactly the hashed flow plus what the engine's build declares; no known
secret value may appear in any file, the image config or its history. Skips without a daemon."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess

import pytest
from deploy_helpers import docker_mark

from genaiops.config.deployment import OFFLINE_BASE_IMAGE
from genaiops.deploy import dockercli
from genaiops.deploy.image_scan import (
    OWNER_LABEL,
    SCAN_LABEL,
    ImageScanFailed,
    require_clean,
    scan_image,
)
from genaiops.workspace.sweep import owner_tag

BASE = os.environ.get("GENAIOPS_BASE_IMAGE", OFFLINE_BASE_IMAGE)
REASON = dockercli.unavailable_reason()
if REASON is None and dockercli.inspect("image", BASE) is None:
    REASON = f"base image {BASE} missing (run .ci/setup-docker.sh)"
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900), docker_mark(REASON)]

CANARY = "canary-" + secrets.token_hex(12)
FLOW = {"flow.dag.yaml": b"nodes: []\n", "tools/clean.py": b"def f():\n    return 1\n"}
GENERATED = (".promptflow/flow.tools.json",)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    tags = []

    def make(files: dict[str, bytes], extra_dockerfile: str = "", links: dict[str, str] | None = None) -> str:
        context = tmp_path_factory.mktemp("ctx")
        for rel, data in files.items():
            path = context / "flow" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        lines = [f"FROM {BASE}", "COPY flow/ /flow/"]
        lines += [f"RUN ln -s {target} /flow/{name}" for name, target in (links or {}).items()]
        tag = f"genaiops-test/scan-{secrets.token_hex(4)}:1"
        (context / "Dockerfile").write_text("\n".join(lines) + "\n" + extra_dockerfile)
        subprocess.run(["docker", "build", "-q", "--network", "none", "-t", tag, str(context)], check=True,
                       capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        tags.append(tag)
        return tag

    yield make
    if tags:
        dockercli.docker("rmi", "-f", *tags, check=False)


def _scan(tag, expected=FLOW):
    return scan_image(tag, flow_dir="/flow", expected={k: hashlib.sha256(v).digest() for k, v in expected.items()},
                      generated=GENERATED, secrets={CANARY, "x"})


def test_an_image_holding_exactly_the_hashed_flow_passes(build):
    tag = build({**FLOW, ".promptflow/flow.tools.json": b"{}"})
    result = _scan(tag)
    assert result.ok, result.as_dict()
    assert result.files > 1000 and result.bytes > 10_000_000  # the whole filesystem was read
    require_clean(result)
    # its export container is gone (this image's: another command's scan may be running)
    assert not dockercli.text("ps", "-aq", "--filter", "label=io.genaiops.scan=1", "--filter", f"ancestor={tag}")


def test_the_scan_container_of_a_killed_command_is_removed_by_the_next_scan(build):
    """SIGKILL mid-scan skips the `finally` that removes the export container; the next scan on the
    machine removes it, and leaves alone a scan container whose command still runs."""
    tag = build(FLOW)
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_owner = owner_tag().rsplit("-", 1)[0] + f"-{dead.pid}"
    left, running = (dockercli.text("create", "--label", f"{SCAN_LABEL}=1", "--label", f"{OWNER_LABEL}={owner}", tag)
                     for owner in (dead_owner, owner_tag()))
    try:
        assert _scan(tag).ok
        listed = dockercli.text("ps", "-aq", "--no-trunc", "--filter", f"ancestor={tag}")
        assert left not in listed and running in listed
    finally:
        dockercli.docker("rm", "-f", left, running, check=False)


def test_stray_changed_missing_and_linked_files_are_named(build):
    tag = build({"flow.dag.yaml": b"nodes: [changed]\n", "keyring_pass.cfg": b"[keyring]\n"},
                links={"notes.txt": "/etc/passwd"})
    result = _scan(tag)
    assert result.unexpected == ["/flow/keyring_pass.cfg", "/flow/notes.txt (link)"]
    assert result.modified == ["/flow/flow.dag.yaml"] and result.missing == ["/flow/tools/clean.py"]
    with pytest.raises(ImageScanFailed) as info:
        require_clean(result)
    assert "/flow/keyring_pass.cfg" in info.value.message and f"docker rmi {tag}" in info.value.hint
    assert dockercli.inspect("image", tag) is not None  # nothing the user did not ask for is removed


@pytest.mark.parametrize("where", ["flow file", "other file", "config", "history"])
def test_a_known_secret_anywhere_in_the_image_is_found(build, where):
    files, extra = dict(FLOW), ""
    if where == "flow file":
        files["tools/clean.py"] += f"KEY = '{CANARY}'\n".encode()
    elif where == "other file":
        extra = f"RUN echo '{CANARY}' > /opt/leak.txt\n"  # also in the history, as the command
    elif where == "config":
        extra = f"ENV LLM_API_KEY={CANARY}\n"
    else:
        extra = f"RUN true {CANARY}\n"
    tag = build(files, extra)
    result = _scan(tag, files)
    expected = {"flow file": "/flow/tools/clean.py", "other file": "/opt/leak.txt", "config": "image config",
                "history": "image history"}[where]
    assert expected in result.secrets_in, result.as_dict()
    with pytest.raises(ImageScanFailed) as info:
        require_clean(result)
    assert CANARY not in str(info.value)
