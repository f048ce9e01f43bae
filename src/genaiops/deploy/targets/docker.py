"""Local docker target: blue/green containers, health wait, smoke test, previous one kept on failure.

Two slots per environment: blue on `port`, green on `port + 1`. A deploy starts the new image in
the slot that is not live, waits for `GET /health` (polling, no fixed sleep), POSTs the sample
request to `/score`, and only then removes the old container. On any failure the new container is
removed and the old one keeps serving. Containers use `--network host` so the flow reaches an LLM
(or the loopback LLM simulator) on the host; secrets go in as `-e NAME` without a value.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from genaiops.deploy import dockercli
from genaiops.deploy.targets.base import DeployOutcome, DeployRequest, check_smoke, slug
from genaiops.errors import UsageError
from genaiops.monitoring.store import RES_ENVIRONMENT, RES_IMAGE, RES_USE_CASE
from genaiops.secrets import redact

LABEL_DEPLOYMENT = "io.genaiops.deployment"
LABEL_SLOT = "io.genaiops.slot"
SLOTS = ("blue", "green")
OTLP_PORT = 4318  # the OTLP/HTTP default: where `genaiops monitor --receive` / a deploy's receiver listens
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class DockerTarget:
    name = "docker"

    def __init__(self, extra_labels: dict | None = None, progress=None):
        self.extra_labels = dict(extra_labels or {})  # e.g. a test-run label for cleanup
        self.progress = progress or (lambda message: None)

    def deploy(self, request: DeployRequest) -> DeployOutcome:
        settings = request.env.settings
        base_port = int(settings.get("port", 8080))
        deployment = slug(request.use_case, request.env.name)
        live = self.live(deployment)
        if live and live["image_id"] == request.image.image_id:
            smoke = self._smoke(live["port"], request)
            if smoke["ok"]:
                return DeployOutcome(True, self.name, live["url"], "already serving this image; smoke test passed",
                                     smoke, {"container": live["name"], "slot": live["slot"]}, unchanged=True)
        slot = "green" if live and live["slot"] == "blue" else "blue"
        port = base_port + SLOTS.index(slot)
        name = f"genaiops-{deployment}-{slot}"
        dockercli.docker("rm", "-f", name, check=False)  # a stale, never-live container in this slot
        args = ["run", "-d", "--name", name, "--network", "host",
                "--label", f"{LABEL_DEPLOYMENT}={deployment}", "--label", f"{LABEL_SLOT}={slot}",
                "-e", f"PORT={port}", "-e", f"PROMPTFLOW_WORKER_NUM={int(settings.get('workers', 2))}"]
        if settings.get("threads"):  # else the image's default (10 a process)
            args += ["-e", f"PROMPTFLOW_WORKER_THREADS={int(settings['threads'])}"]
        for variable, value in sorted(telemetry_env(request).items()):
            args += ["-e", f"{variable}={value}"]
        for key, value in sorted(self.extra_labels.items()):
            args += ["--label", f"{key}={value}"]
        for env_name in sorted(request.connection_env):
            args += ["-e", env_name]  # value comes from the subprocess environment, not argv
        self.progress(f"starting {name} on port {port} ...")
        dockercli.docker(*args, request.image.reference or request.image.tag, env=request.connection_env)
        url = f"http://127.0.0.1:{port}"
        health = self._wait_healthy(name, url, float(settings.get("health_timeout_sec", 120)))
        smoke = self._smoke(port, request) if health["ok"] else {"ok": False, "reason": health["reason"]}
        if not smoke["ok"]:
            logs = self._logs(name)
            dockercli.docker("rm", "-f", name, check=False)
            kept = f"; {live['name']} keeps serving {live['url']}" if live else ""
            return DeployOutcome(False, self.name, url, f"smoke test failed: {smoke.get('reason')}{kept}",
                                 smoke, {"container": name, "slot": slot, "health": health,
                                         "logs_tail": logs, "kept": live})
        if live:
            dockercli.docker("rm", "-f", live["name"], check=False)
        return DeployOutcome(True, self.name, url, "deployed; smoke test passed", smoke,
                             {"container": name, "slot": slot, "health": health,
                              "replaced": live["name"] if live else None})

    def live(self, deployment: str) -> dict | None:
        """The running container of this deployment (the newest if, oddly, there are two)."""
        ids = dockercli.text("ps", "-q", "--filter", f"label={LABEL_DEPLOYMENT}={deployment}").split()
        found = []
        for cid in ids:
            info = dockercli.inspect("container", cid)
            if not info or not info["State"]["Running"]:
                continue
            env = dict(e.split("=", 1) for e in info["Config"]["Env"] if "=" in e)
            port = int(env.get("PORT", 8080))
            found.append({"name": info["Name"].lstrip("/"), "image_id": info["Image"], "port": port,
                          "slot": info["Config"]["Labels"].get(LABEL_SLOT, "blue"),
                          "url": f"http://127.0.0.1:{port}", "started": info["State"]["StartedAt"]})
        return max(found, key=lambda c: c["started"]) if found else None

    def stop(self, deployment: str) -> list[str]:
        ids = dockercli.text("ps", "-aq", "--filter", f"label={LABEL_DEPLOYMENT}={deployment}").split()
        if ids:
            dockercli.docker("rm", "-f", *ids, check=False)
        return ids

    def _wait_healthy(self, name: str, url: str, timeout: float) -> dict:
        started = time.monotonic()
        delay = 0.2
        while time.monotonic() - started < timeout:
            state = dockercli.inspect("container", name)
            if not state or not state["State"]["Running"]:
                code = state["State"]["ExitCode"] if state else "?"
                return {"ok": False, "reason": f"container exited (code {code}) before it was healthy"}
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return {"ok": True, "seconds": round(time.monotonic() - started, 2)}
            except httpx.HTTPError:
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        return {"ok": False, "reason": f"/health did not answer 200 within {timeout:.0f}s"}

    def _smoke(self, port: int, request: DeployRequest) -> dict:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/score", json=request.smoke.body,
                                  timeout=request.smoke.timeout_sec)
        except httpx.HTTPError as exc:
            return {"ok": False, "reason": f"POST /score failed: {type(exc).__name__}: {exc}"}
        return check_smoke(response.status_code, response.content, request.smoke.expect_outputs)

    @staticmethod
    def _logs(name: str) -> str:
        done = dockercli.docker("logs", "--tail", "30", name, check=False)
        return redact((done.stdout + done.stderr).decode("utf-8", "replace"))[-3000:]


def telemetry_env(request: DeployRequest) -> dict:
    """Where the container sends its traces (the embedded receiver on the host, `otlp_port`, or
    $OTEL_EXPORTER_OTLP_ENDPOINT), and what describes them: use case, environment, image id,
    flow hash, variant. Message content only where the environment allows it (`capture_content`)."""
    import os

    settings = request.env.settings
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or \
        f"http://127.0.0.1:{int(settings.get('otlp_port', OTLP_PORT))}"
    resource = {"service.name": request.use_case, RES_USE_CASE: request.use_case,
                RES_ENVIRONMENT: request.env.name, RES_IMAGE: request.image.artifact,
                "genaiops.flow_hash": request.image.labels.get("flow_hash", ""),
                "genaiops.variant": request.variant}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": request.use_case,
            "OTEL_RESOURCE_ATTRIBUTES": ",".join(f"{k}={quote(str(v), safe='')}" for k, v in resource.items()),
            CAPTURE_ENV: "true" if settings.get("capture_content") else "false"}


def validate_settings(settings: dict) -> None:
    port = int(settings.get("port", 8080))
    if port + 1 > 65535:
        raise UsageError(f"port {port} leaves no room for the green slot (port + 1)")
