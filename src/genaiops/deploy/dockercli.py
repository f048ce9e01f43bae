"""The docker CLI through subprocess: no SDK dependency, every line we pass on is redacted.

Secrets are never put on a docker command line: `docker run -e NAME` (no value) makes docker copy
the value from the environment we give the subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from genaiops.errors import GenaiopsError
from genaiops.secrets import redact


class DockerError(GenaiopsError):
    """A docker command failed; the message carries its (redacted) stderr tail."""


def unavailable_reason() -> str | None:
    """None when a daemon answers, else why not (for skips and clear errors)."""
    if not shutil.which("docker"):
        return "the docker CLI is not installed (run .ci/setup-docker.sh)"
    try:
        done = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker does not answer ({type(exc).__name__})"
    if done.returncode != 0:
        return "no docker daemon is reachable (start dockerd, e.g. .ci/setup-docker.sh)"
    return None


def docker(*args: str, env: dict | None = None, timeout: float = 1800, check: bool = True,
           input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `docker args...`; raise DockerError (redacted stderr tail) when it fails and `check`."""
    run_env = None if env is None else {**os.environ, **env}
    try:
        done = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, env=run_env,
                              input=input_bytes, check=False)
    except FileNotFoundError:
        raise DockerError("the docker CLI is not installed", hint="run .ci/setup-docker.sh") from None
    except subprocess.TimeoutExpired:
        raise DockerError(f"`docker {args[0]}` did not finish within {timeout:.0f}s") from None
    if check and done.returncode != 0:
        tail = redact(done.stderr.decode("utf-8", "replace").strip())[-1500:]
        raise DockerError(f"`docker {args[0]}` failed (exit {done.returncode}): {tail}",
                          hint="check that dockerd is running (.ci/setup-docker.sh) and the base image exists")
    return done


def text(*args: str, **kwargs) -> str:
    return docker(*args, **kwargs).stdout.decode("utf-8", "replace").strip()


def inspect(kind: str, name: str) -> dict | None:
    """`docker <kind> inspect name` as a dict, or None when it does not exist."""
    done = docker(kind, "inspect", name, check=False)
    if done.returncode != 0:
        return None
    data = json.loads(done.stdout or b"[]")
    return data[0] if data else None
