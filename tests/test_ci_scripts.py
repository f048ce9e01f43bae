"""The CI shell scripts that do not need a docker daemon: the Debian mirror debootstrap uses is the
one the machine's apt sources name (deb822 `*.sources` or `sources.list`), never a hard-coded host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci/apt-mirror.sh"


def _mirror(etc: Path, release: str = "bookworm", **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), release], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "GENAIOPS_APT_ETC": str(etc), **env})


DEB822 = """\
Types: deb-src
URIs: http://source-only.example/debian
Suites: bookworm
Components: main

Types: deb
# a comment line inside the paragraph
URIs: http://mirror.example.org/debian http://second.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources_name_the_mirror(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    done = _mirror(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://mirror.example.org/debian"


def test_security_suite_alone_is_not_the_mirror(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "security.sources").write_text(DEB822.split("\n\n")[2])
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://list.example.net/debian/ bookworm main\n")
    done = _mirror(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://list.example.net/debian/"


def test_explicit_mirror_wins_and_nothing_found_is_an_error(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://list.example.net/debian bookworm main\n")
    assert _mirror(tmp_path, GENAIOPS_DEBIAN_MIRROR="http://override.example/debian").stdout.strip() == \
        "http://override.example/debian"
    done = _mirror(tmp_path, release="trixie")
    assert done.returncode == 1 and done.stdout == ""
    assert "no apt source for trixie" in done.stderr and "GENAIOPS_DEBIAN_MIRROR" in done.stderr


@pytest.mark.parametrize("host", ["deb.debian.org"])
def test_setup_script_hard_codes_no_mirror(host):
    setup = (SCRIPT.parent / "setup-docker.sh").read_text()
    assert host not in setup and "apt-mirror.sh" in setup


FAKE_DOCKER = """#!/usr/bin/env bash
# answers like a daemon once the fake dockerd has written its pid
[ -s "{state}/dockerd.pid" ] && exit 0
exit 1
"""
FAKE_DOCKERD = """#!/usr/bin/env bash
echo $$ > "{state}/dockerd.pid"
exec sleep 120
"""


@pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
                    reason="setup-docker.sh calls sudo when not root")
def test_a_daemon_started_by_setup_does_not_hold_the_setup_lock(tmp_path):
    """The daemon setup-docker.sh starts outlives the script; had it inherited the lock's descriptor,
    the next setup on the machine (the idempotence test, a second CI job) would wait forever. Here
    dockerd, docker and debootstrap are stand-ins on PATH; the lock is the real one."""
    state, bin_dir, lock = tmp_path / "state", tmp_path / "bin", tmp_path / "setup.lock"
    state.mkdir()
    bin_dir.mkdir()
    for name, text in {"docker": FAKE_DOCKER, "dockerd": FAKE_DOCKERD, "debootstrap": "#!/bin/sh\nexit 1\n"}.items():
        (bin_dir / name).write_text(text.format(state=state))
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GENAIOPS_SETUP_LOCK": str(lock),
           "GENAIOPS_DOCKERD_LOG": str(tmp_path / "dockerd.log"), "GENAIOPS_SETUP_LOCK_WAIT": "5"}
    script = SCRIPT.parent / "setup-docker.sh"
    try:
        first = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60,
                               check=False)
        assert first.returncode == 0, first.stderr
        assert "starting dockerd" in first.stdout and "ready" in first.stdout
        daemon = int((state / "dockerd.pid").read_text())
        assert Path(f"/proc/{daemon}").exists()  # the stand-in daemon still runs, as dockerd would
        held = [link for link in Path(f"/proc/{daemon}/fd").iterdir() if Path(os.readlink(link)) == lock]
        assert held == []
        second = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60,
                                check=False)
        assert second.returncode == 0, second.stderr
        assert "starting dockerd" not in second.stdout and "ready" in second.stdout
    finally:
        pid_file = state / "dockerd.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)
