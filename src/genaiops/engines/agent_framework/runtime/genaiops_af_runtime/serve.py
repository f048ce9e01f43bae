"""The serving image's ASGI app: the promptflow image's contract on Agent Framework.

    GET  /health    -> 200 {"status": "healthy"} once the app has loaded
    POST /score     -> 200 {<output>: value, ...} for a JSON object of inputs;
                       400 for a body that is not one, 500 {"error": ...} when the app failed
    POST /feedback  -> 202 once recorded as a span linked to the rated trace (400 bad body,
                       503 when tracing is off)

With an exporter configured, `genaiops_telemetry` (copied beside this package in the image) wraps
each /score in a root span whose children are Agent Framework's own chat/agent spans.

Started by `python -m genaiops_af_runtime.serve` (uvicorn on $PORT, default 8080). The app and the
variant's parameters are in $GENAIOPS_APP_DIR (`genaiops-app.json`), the connections' secret-free
settings in `genaiops-connections.json` beside it; `<CONN>_API_KEY`, `<CONN>_BASE_URL` (OpenAI) or
`<CONN>_API_BASE` (Azure OpenAI) and `<CONN>_API_VERSION` set at container start override them,
as in the promptflow image. Nothing secret is in the image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

try:  # beside the package in the image; absent from the engine's batch environment
    import genaiops_telemetry
except ImportError:
    genaiops_telemetry = None

from genaiops_af_runtime.app import App, AppError, load_build
from genaiops_af_runtime.llm import Connections, RetryPolicy, env_prefix

APP_FILE = "genaiops-app.json"
CONNECTIONS_FILE = "genaiops-connections.json"


def connections_from(described: list[dict], environ) -> list[dict]:
    """The baked descriptions with the container's `<CONN>_<KEY>` variables applied."""
    resolved = []
    for conn in described:
        prefix = env_prefix(conn["name"])
        endpoint_key = "BASE_URL" if conn["type"] == "open_ai" else "API_BASE"
        resolved.append({**conn,
                         "endpoint": environ.get(f"{prefix}_{endpoint_key}", conn.get("endpoint")),
                         "api_key": environ.get(f"{prefix}_API_KEY", ""),
                         "api_version": environ.get(f"{prefix}_API_VERSION",
                                                    conn.get("api_version"))})
    return resolved


def load_app(app_dir: Path, environ) -> App:
    spec = json.loads((app_dir / APP_FILE).read_text(encoding="utf-8"))
    described = json.loads((app_dir.parent / CONNECTIONS_FILE).read_text(encoding="utf-8"))
    policy = RetryPolicy(max_attempts=int(environ.get("GENAIOPS_LLM_MAX_ATTEMPTS", "3")),
                         backoff_sec=float(environ.get("GENAIOPS_LLM_BACKOFF_SEC", "0.5")))
    llm = Connections(connections_from(described, environ), policy)
    return App(load_build(app_dir, spec["entry"]), llm, spec.get("params") or {},
               spec["inputs"], spec["outputs"])


def create_app(app_dir: Path | None = None, environ=None) -> Starlette:
    environ = os.environ if environ is None else environ
    telemetry = genaiops_telemetry.setup(environ) if genaiops_telemetry is not None else None
    if telemetry is not None:  # Agent Framework's own spans: message content only when allowed
        from agent_framework.observability import enable_instrumentation

        enable_instrumentation(enable_sensitive_data=telemetry.capture)
    app = load_app(Path(app_dir or environ.get("GENAIOPS_APP_DIR", "/app/flow")), environ)

    async def run(inputs: dict) -> tuple[int, dict, str]:
        try:
            line = await app.run(inputs)
        except AppError as exc:
            return 500, {"error": str(exc)}, "AppError"
        except Exception as exc:  # the model call or the app failed: say what, not a traceback
            return 500, {"error": f"{type(exc).__name__}: {exc}"[:1000]}, type(exc).__name__
        return 200, line.outputs, ""

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def score(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "send the inputs as one JSON object"}, status_code=400)
        missing = [name for name in app.inputs if name not in body]
        if missing:
            return JSONResponse({"error": f"missing inputs {missing}"}, status_code=400)
        inputs = {name: body[name] for name in app.inputs}
        if telemetry is None:
            status, payload, _error = await run(inputs)
            return JSONResponse(payload, status_code=status)
        with telemetry.score(inputs) as scored:
            status, payload, error = await run(inputs)
            if error:
                scored.fail(error, payload["error"])
            else:
                scored.ok(payload)
        return JSONResponse(payload, status_code=status,
                            headers={"x-genaiops-trace-id": scored.trace_id,
                                     "x-genaiops-response-id": scored.response_id})

    async def feedback(request: Request) -> JSONResponse:
        if telemetry is None:
            return JSONResponse({"error": "feedback needs tracing: set OTEL_EXPORTER_OTLP_ENDPOINT or "
                                          "APPLICATIONINSIGHTS_CONNECTION_STRING"}, status_code=503)
        try:
            if int(request.headers.get("content-length") or 0) > 16_384:
                return JSONResponse({"error": "at most 16384 bytes"}, status_code=413)
        except ValueError:
            return JSONResponse({"error": "bad Content-Length"}, status_code=400)
        body = await request.body()
        try:
            record = genaiops_telemetry.parse_feedback(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        telemetry.feedback(record)
        return JSONResponse({"status": "recorded"}, status_code=202)

    return Starlette(routes=[Route("/health", health, methods=["GET"]),
                             Route("/score", score, methods=["POST"]),
                             Route("/feedback", feedback, methods=["POST"])])


def main() -> None:
    import uvicorn

    uvicorn.run(create_app(), host=os.environ.get("HOST", "0.0.0.0"),
                port=int(os.environ.get("PORT", "8080")), log_level="warning")


if __name__ == "__main__":
    main()
