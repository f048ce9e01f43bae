"""The promptflow image's WSGI entry: promptflow's flask app with genaiops' traces and `/feedback`.

Copied into the image beside `genaiops_telemetry` (it imports nothing of genaiops) and started by
gunicorn as `genaiops_pf_serve:create_app()`. With an exporter configured (`genaiops_telemetry`),
each `POST /score` runs inside a root span whose children are promptflow's own traced node and LLM
spans, and its answer carries `x-genaiops-trace-id` / `x-genaiops-response-id`;
`POST /feedback` records a feedback span linked to that trace (202), 400 for a bad body.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import logging
import os
import types
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # in the image the module sits beside this file; here it is genaiops.engines'
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from genaiops.engines import genaiops_telemetry
else:
    try:
        import genaiops_telemetry
    except ImportError:  # imported from the genaiops package: a batch worker (`fastbatch`)
        from genaiops.engines import genaiops_telemetry

MAX_SCORE_BODY = 10 * 1024 * 1024


def _answer(start_response: StartResponse, status: str, payload: dict[str, Any],
            headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps(payload).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            *headers])
    return [body]


def _read(environ: WSGIEnvironment, limit: int) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length < 0 or length > limit:
        return None
    return environ["wsgi.input"].read(length) if length else b""


def _unused_write(data: bytes) -> None:
    """WSGI's `write()`: promptflow's app returns its body instead."""


class Traced:
    def __init__(self, app: WSGIApplication, telemetry: genaiops_telemetry.Telemetry | None):
        self.app, self.telemetry = app, telemetry

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/feedback" and method == "POST":
            return self._feedback(environ, start_response)
        if path != "/score" or method != "POST" or self.telemetry is None:
            return self.app(environ, start_response)
        body = _read(environ, MAX_SCORE_BODY)
        if body is None:
            return _answer(start_response, "413 Payload Too Large", {"error": "the body is too large"})
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            inputs: object = json.loads(body.decode("utf-8"))
        except ValueError:
            inputs = None
        captured: dict[str, Any] = {}

        def capture_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, list(headers)
            return _unused_write

        with self.telemetry.score(inputs) as scored:
            result = self.app(environ, cast("StartResponse", capture_start))
            try:
                data = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            code = int(captured["status"].split()[0])
            if code >= 400:
                scored.fail(f"http.{code}", data.decode("utf-8", "replace")[:1000])
            else:
                try:
                    scored.ok(json.loads(data.decode("utf-8")))
                except ValueError:
                    scored.ok(data.decode("utf-8", "replace"))
        headers: list[tuple[str, str]] = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers += [("Content-Length", str(len(data))), ("x-genaiops-trace-id", scored.trace_id),
                    ("x-genaiops-response-id", scored.response_id)]
        start_response(captured["status"], headers)
        return [data]

    def _feedback(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if self.telemetry is None:
            return _answer(start_response, "503 Service Unavailable",
                           {"error": "feedback needs tracing: set OTEL_EXPORTER_OTLP_ENDPOINT or "
                                     "APPLICATIONINSIGHTS_CONNECTION_STRING"})
        body = _read(environ, 16_384)
        if body is None:
            return _answer(start_response, "413 Payload Too Large", {"error": "at most 16384 bytes"})
        try:
            record = genaiops_telemetry.parse_feedback(body)
        except ValueError as exc:
            return _answer(start_response, "400 Bad Request", {"error": str(exc)})
        self.telemetry.feedback(record)
        return _answer(start_response, "202 Accepted", {"status": "recorded"})


def lighten_promptflow_tracing(capture: bool, *, run_traces: bool) -> None:
    """Promptflow's own tracing (node and LLM spans: node names, models, token usage), configured to
    cost what is exported and no more; it doubled a served request's CPU otherwise (README, B10):
    - inputs, outputs, prompt templates and generated messages are serialized only into a span that
      records (batch workers have no tracer provider: promptflow serialized them for nothing) and
      only when content may be exported (`capture`; the model is always set);
    - without `run_traces` (serving), its per-node `Tracer` still names the node spans but no
      longer serializes every input and output again for the run info's `api_calls`, which
      serving never returns (with tracing off promptflow does not collect them either); batch
      runs keep them: their token counts per node come from there;
    - the signatures of traced functions are looked up once, not on every call;
    - OpenTelemetry's per-span warnings about usage fields it cannot store (None, nested details)
      are not logged: promptflow routes each through its node log capture.
    Also used by genaiops' batch workers (`fastbatch`). A promptflow whose tracing internals
    differ is left as it is."""
    logging.getLogger("opentelemetry.attributes").setLevel(logging.ERROR)
    try:
        tracing: Any = importlib.import_module("promptflow.tracing._trace")
        tracer_module: Any = importlib.import_module("promptflow.tracing._tracer")
    except ImportError:
        return
    if getattr(tracer_module, "inspect", None) is inspect:
        tracer_module.inspect = _CachedSignatures()
    tracer: Any = getattr(tracer_module, "Tracer", None)
    if not run_traces and all(hasattr(tracer, name) for name in ("_push", "_pop", "to_json")):
        push, pop = tracer._push, tracer._pop

        def light_push(self: Any, trace: Any) -> None:
            inputs, trace.inputs = trace.inputs, None
            try:
                push(self, trace)
            finally:
                trace.inputs = inputs

        def light_pop(self: Any, output: Any = None, error: Exception | None = None) -> Any:
            if isinstance(output, (Iterator, AsyncIterator)):  # wrapped in promptflow's proxies, not serialized
                return pop(self, output, error)
            pop(self, None, error)
            return output

        def no_run_traces(self: Any) -> list[Any]:
            return []

        tracer._push, tracer._pop, tracer.to_json = light_push, light_pop, no_run_traces
    try:  # the flow span's inputs: the executor imported the enricher by name
        flow_executor: Any = importlib.import_module("promptflow.executor.flow_executor")
    except ImportError:
        flow_executor = None
    for module in (tracing, flow_executor):
        for name in _CONTENT_ENRICHERS:
            original = getattr(module, name, None)
            if original is not None and not getattr(original, "_genaiops_light", False):
                setattr(module, name, _content_enricher(original, name, capture))


_CONTENT_ENRICHERS = ("enrich_span_with_input", "enrich_span_with_output", "enrich_span_with_prompt_info",
                      "enrich_span_with_llm", "enrich_span_with_embedding")


def _content_enricher(original: Any, name: str, capture: bool) -> Any:
    """`original(span, ...)` only for a recording span and allowed content; otherwise the LLM and
    embedding enrichers still set the model, `enrich_span_with_input` still returns its input."""

    def enrich(span: Any, *args: Any, **kwargs: Any) -> Any:
        recording = span.is_recording()
        if recording and capture:
            return original(span, *args, **kwargs)
        model = (args[0] if name == "enrich_span_with_llm" and args else
                 getattr(args[1], "model", None) if name == "enrich_span_with_embedding" and len(args) > 1 else None)
        if recording and isinstance(model, str) and model:
            span.set_attribute("llm.response.model", model)
        return args[0] if name == "enrich_span_with_input" and args else None

    enrich._genaiops_light = True  # pyright: ignore[reportFunctionMemberAccess]
    return enrich


class _CachedSignatures:
    """`inspect` as promptflow's tracer sees it, with the signatures of plain functions and bound
    methods cached (it built each one again on every traced call)."""

    LIMIT = 4096

    def __init__(self):
        self._cache: dict[tuple[object, bool], inspect.Signature] = {}

    def signature(self, f: Any) -> inspect.Signature:
        bound = isinstance(f, types.MethodType)
        func = f.__func__ if bound else f
        if not isinstance(func, types.FunctionType):
            return inspect.signature(f)
        found = self._cache.get((func, bound))
        if found is None:
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
            found = self._cache[(func, bound)] = inspect.signature(f)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)


def create_app() -> Any:
    telemetry = genaiops_telemetry.setup()
    if telemetry is not None:  # promptflow traces nodes and LLM calls only when told (default: off)
        os.environ["PF_DISABLE_TRACING"] = "false"
        lighten_promptflow_tracing(telemetry.capture, run_traces=False)
    from promptflow.core._serving.app import (  # pyright: ignore[reportMissingTypeStubs]
        create_app as promptflow_app,  # pyright: ignore[reportUnknownVariableType]
    )

    app: Any = promptflow_app(engine="flask")  # a flask app (promptflow ships no types)
    _without_flask_span(app)
    app.wsgi_app = Traced(app.wsgi_app, telemetry)
    return app


def _without_flask_span(app: Any) -> None:
    """promptflow instruments its flask app when opentelemetry-instrumentation-flask is installed: a
    server span a request, one level below genaiops' root span (`Traced`), repeating it with HTTP
    attributes; one span in eight of a classification request, and work on every request even untraced. It
    is removed with the instrumentation's own `uninstrument_app`; the tree stays whole."""
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    instrumentation: Any = importlib.import_module("opentelemetry.instrumentation.flask")  # no type stubs
    instrumentation.FlaskInstrumentor.uninstrument_app(app)
