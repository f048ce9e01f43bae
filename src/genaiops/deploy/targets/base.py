"""One protocol for every deployment target, plus the pieces they share (smoke-test checks,
connection environment variables), so adapters hold only what is specific to their platform."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

from genaiops.config.deployment import DeploymentConfig, Environment
from genaiops.deploy.image import ImageRef


@dataclass(frozen=True)
class SmokeSpec:
    body: dict
    expect_outputs: tuple[str, ...]
    timeout_sec: float = 60.0


@dataclass
class DeployRequest:
    use_case: str
    env: Environment
    config: DeploymentConfig
    image: ImageRef
    variant: str
    smoke: SmokeSpec
    connection_env: dict  # <CONN>_<KEY> -> value; secrets included: never logged or recorded
    secret_env_names: tuple[str, ...]  # which of connection_env are secret
    previous: dict | None = None  # the last successful deployment record of this env


@dataclass
class DeployOutcome:
    ok: bool
    target: str
    endpoint: str = ""
    message: str = ""
    smoke: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    unchanged: bool = False  # the live deployment already runs this artifact

    def as_dict(self) -> dict:
        return {"ok": self.ok, "target": self.target, "endpoint": self.endpoint, "message": self.message,
                "smoke": self.smoke, "details": self.details, "unchanged": self.unchanged}


class DeploymentTarget(Protocol):
    name: str

    def deploy(self, request: DeployRequest) -> DeployOutcome:
        """Roll out `request.image`, smoke-test it, keep the previous deployment when that fails."""


def check_smoke(status: int, body: bytes | str, expect: tuple[str, ...]) -> dict:
    """The verdict on one /score answer: HTTP 200, a JSON object holding every expected output."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    result = {"ok": False, "status": status, "expected_outputs": list(expect)}
    if status != 200:
        result["reason"] = f"HTTP {status}: {text[:300]}"
        return result
    try:
        data = json.loads(text)
    except ValueError:
        result["reason"] = f"response is not JSON: {text[:200]}"
        return result
    if not isinstance(data, dict):
        result["reason"] = f"response is a {type(data).__name__}, expected a JSON object"
        return result
    missing = [k for k in expect if k not in data]
    empty = [k for k in expect if k in data and data[k] in (None, "")]
    if missing or empty:
        result["reason"] = (f"missing outputs {missing}" if missing else "") + \
                           (f" empty outputs {empty}" if empty else "")
        return result
    result.update(ok=True, outputs={k: data[k] for k in expect})
    return result


def slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
