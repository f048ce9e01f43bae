"""Traces of a serving image: one span tree per `/score`, GenAI semantic conventions, redacted.

Copied as a single file into every serving image (it imports nothing of genaiops; it runs with
OpenTelemetry 1.38 in the promptflow image and 1.45 in the Agent Framework one). Standard
variables turn it on: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`: OTLP/HTTP protobuf)
and `APPLICATIONINSIGHTS_CONNECTION_STRING` (Azure Monitor, when its exporter is installed);
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (use case, environment, image, flow hash,
variant: set by the deployment target) describe the resource. Without an exporter nothing is set
up and serving is unchanged.

The root span (`invoke_agent <service>`) carries `gen_ai.operation.name`, the request/response
model and the token usage summed over the engine's own LLM spans (promptflow's tracing, Agent
Framework's observability), `gen_ai.response.id` (returned to the caller as
`x-genaiops-response-id`, which `/feedback` accepts), `error.type` on failure. Inputs and outputs are
recorded only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`; with or without it
every exported string has the container's secret values (variables whose names look secret)
masked, and the engine's spans keep only non-content attributes unless capture is on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Generator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.util.types import AttributeValue

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SECRET_NAME = re.compile(r"(KEY(?!RING)|SECRET|TOKEN|PASSWORD|PASSWD|CONNECTION_STRING|SAS)", re.I)
MASK = "***"
MAX_CONTENT = 16_000  # characters of captured inputs/outputs per attribute
# attributes of the engine's spans kept when content capture is off (everything else may be content)
_SAFE_PREFIXES = ("gen_ai.operation.", "gen_ai.request.", "gen_ai.response.", "gen_ai.usage.", "gen_ai.system",
                  "gen_ai.provider.", "gen_ai.agent.id", "gen_ai.agent.name", "gen_ai.conversation.id",
                  "llm.usage.", "llm.response.model", "llm.request.model", "error.", "http.", "server.",
                  "genaiops.", "span_type", "function", "framework", "node_name", "executor.", "workflow.")
_CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                 "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.request.messages")
FEEDBACK_EVENT = "gen_ai.user.feedback"
MODEL_CALLS = ("chat", "text_completion", "generate_content", "embeddings")


def capture_content(environ: Mapping[str, str] | None = None) -> bool:
    return (environ or os.environ).get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes")


class Redactor:
    """The container's secret values (from its environment), masked in every exported string."""

    def __init__(self, environ: Mapping[str, str]):
        values = sorted({v for k, v in environ.items() if v and len(v) >= 4 and _SECRET_NAME.search(k)},
                        key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: AttributeValue) -> AttributeValue:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Sequence) and value and isinstance(value[0], str):
            return tuple(self(v) if isinstance(v, str) else v for v in value)  # pyright: ignore[reportReturnType]
        return value


def _keep(key: str, capture: bool) -> bool:
    if capture:
        return True
    return key not in _CONTENT_KEYS and key.startswith(_SAFE_PREFIXES)


class _Totals:
    """Token usage and models of the engine's LLM spans, per trace, read by the root span."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_trace: dict[int, dict[str, Any]] = {}

    def add(self, trace_id: int, attrs: Mapping[str, Any]) -> None:
        operation = attrs.get("gen_ai.operation.name")
        if operation is not None and operation not in MODEL_CALLS:
            return  # an agent or workflow span repeats its model calls' usage: count calls once
        inp = attrs.get("gen_ai.usage.input_tokens", attrs.get("llm.usage.prompt_tokens"))
        out = attrs.get("gen_ai.usage.output_tokens", attrs.get("llm.usage.completion_tokens"))
        model = attrs.get("gen_ai.response.model") or attrs.get("llm.response.model")
        req = attrs.get("gen_ai.request.model") or attrs.get("llm.request.model") or model
        if inp is None and out is None and model is None:
            return
        with self._lock:
            t = self._by_trace.setdefault(trace_id, {"input": 0, "output": 0, "calls": 0})
            t["input"] += int(inp or 0)
            t["output"] += int(out or 0)
            t["calls"] += 1 if (inp is not None or out is not None) else 0
            if model:
                t["response_model"] = str(model)
            if req:
                t["request_model"] = str(req)

    def pop(self, trace_id: int) -> dict[str, Any]:
        with self._lock:
            return self._by_trace.pop(trace_id, {})


class Telemetry:
    """Tracing of one serving process; `score()` wraps a request, `feedback()` records feedback."""

    def __init__(self, provider: TracerProvider, environ: Mapping[str, str]):
        from opentelemetry import trace

        self.provider = provider
        self.capture = capture_content(environ)
        self.redact = Redactor(environ)
        self.service = environ.get("OTEL_SERVICE_NAME", "genaiops-flow")
        self.resource = dict(provider.resource.attributes)
        self.tracer = trace.get_tracer("genaiops.serving")
        self.totals = _Totals()

    def _content(self, value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        return self.redact(text)[:MAX_CONTENT]

    @contextlib.contextmanager
    def score(self, inputs: object) -> Generator[Scored, None, None]:
        """The root span of one request; yields a `Scored` to report outputs or failure."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        scored = Scored()
        with self.tracer.start_as_current_span(f"invoke_agent {self.service}", kind=SpanKind.SERVER,
                                               record_exception=False, set_status_on_exception=False) as span:
            trace_id = span.get_span_context().trace_id
            scored.trace_id = f"{trace_id:032x}"
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.name", self.service)
            span.set_attribute("gen_ai.response.id", scored.response_id)
            for key, value in self.resource.items():  # Azure Monitor keeps span attributes, not resource ones
                if key.startswith("genaiops.") or key == "deployment.environment":
                    span.set_attribute(key, value)
            if self.capture:
                span.set_attribute("genaiops.inputs", self._content(inputs))
            try:
                yield scored
            except BaseException as exc:
                scored.fail(type(exc).__name__, str(exc))
                raise
            finally:
                totals = self.totals.pop(trace_id)
                if totals.get("request_model"):
                    span.set_attribute("gen_ai.request.model", totals["request_model"])
                if totals.get("response_model"):
                    span.set_attribute("gen_ai.response.model", totals["response_model"])
                span.set_attribute("gen_ai.usage.input_tokens", totals.get("input", 0))
                span.set_attribute("gen_ai.usage.output_tokens", totals.get("output", 0))
                span.set_attribute("genaiops.llm_calls", totals.get("calls", 0))
                if scored.error_type:
                    span.set_attribute("error.type", scored.error_type)
                    span.set_status(Status(StatusCode.ERROR, self.redact(scored.error_message)[:1000]))
                elif self.capture and scored.outputs is not None:
                    span.set_attribute("genaiops.outputs", self._content(scored.outputs))

    def feedback(self, record: Mapping[str, Any]) -> None:
        """One feedback span linked to the trace it rates (exported like the rest)."""
        from opentelemetry.trace import Link, SpanContext, TraceFlags

        links: list[Link] = []
        if record.get("trace_id"):
            ctx = SpanContext(int(record["trace_id"], 16), int(record.get("span_id") or "1" * 16, 16),
                              is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            links.append(Link(ctx))
        attrs: dict[str, AttributeValue] = {"gen_ai.operation.name": "feedback"}
        for key in ("trace_id", "response_id", "label"):
            if record.get(key):
                attrs[f"genaiops.feedback.{key}"] = self.redact(str(record[key]))
        if record.get("rating") is not None:
            attrs["genaiops.feedback.rating"] = float(record["rating"])
        for key in ("correction", "comment"):  # free text a person wrote: content rules apply
            if record.get(key) is not None and self.capture:
                attrs[f"genaiops.feedback.{key}"] = self._content(record[key])
        with self.tracer.start_as_current_span(FEEDBACK_EVENT, links=links, attributes=attrs) as span:
            span.add_event(FEEDBACK_EVENT, attrs)

    def flush(self) -> None:
        self.provider.force_flush(5000)


class Scored:
    def __init__(self):
        self.response_id = "resp-" + uuid.uuid4().hex
        self.trace_id = ""
        self.outputs: object = None
        self.error_type = ""
        self.error_message = ""
        self.started = time.monotonic()

    def ok(self, outputs: object) -> None:
        self.outputs = outputs

    def fail(self, error_type: str, message: str = "") -> None:
        self.error_type = self.error_type or error_type
        self.error_message = self.error_message or message


def _processor_class() -> type[Any]:
    from opentelemetry.sdk.trace import SpanProcessor

    class TotalsProcessor(SpanProcessor):
        """Adds each ended LLM span's usage to its trace's totals (before the root span ends)."""

        def __init__(self, totals: _Totals):
            self.totals = totals

        def on_end(self, span: ReadableSpan) -> None:
            if span.attributes and span.context is not None:
                self.totals.add(span.context.trace_id, span.attributes)

    return TotalsProcessor


def _filtering_exporter(inner: SpanExporter, capture: bool, redact: Redactor) -> SpanExporter:
    """An exporter that exports redacted copies: string values masked, and the engine's content
    attributes and content events dropped unless capture is on."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    def attrs(values: Mapping[str, AttributeValue] | None, own: bool) -> dict[str, AttributeValue]:
        return {k: redact.value(v) for k, v in (values or {}).items() if own or _keep(k, capture)}

    class RedactingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            copies: list[ReadableSpan] = []
            for s in spans:
                own = s.instrumentation_scope is not None and s.instrumentation_scope.name == "genaiops.serving"
                events = [Event(e.name, attrs(e.attributes, own or e.name == "exception"), e.timestamp)
                          for e in s.events if own or capture or e.name == "exception"]
                status = s.status
                if status.description:
                    from opentelemetry.trace import Status

                    status = Status(status.status_code, redact(status.description))
                copies.append(ReadableSpan(
                    name=redact(s.name), context=s.context, parent=s.parent, resource=s.resource,
                    attributes=attrs(s.attributes, own), events=events, links=s.links, kind=s.kind,
                    status=status, start_time=s.start_time, end_time=s.end_time,
                    instrumentation_scope=s.instrumentation_scope))
            return inner.export(copies)

        def shutdown(self) -> None:
            return inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis) if hasattr(inner, "force_flush") else True

    return RedactingExporter()


def setup(environ: MutableMapping[str, str] | None = None, *, take_over: bool = True) -> Telemetry | None:
    """A `Telemetry` when an exporter is configured (and the SDK installed), else None. With
    `take_over`, the exporter variables are removed from this process's environment afterwards so
    the engine's own exporter set-up (promptflow's serving app) does not export unredacted spans."""
    environ = os.environ if environ is None else environ
    otlp = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    azure = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if not (otlp or azure) or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        print(f"genaiops: tracing is off, the OpenTelemetry SDK is missing: {exc}", flush=True)
        return None
    redact = Redactor(environ)
    capture = capture_content(environ)
    totals = _Totals()
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(_processor_class()(totals))
    exporters: list[SpanExporter] = []
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or otlp.rstrip("/") + "/v1/traces"
        exporters.append(OTLPSpanExporter(endpoint=endpoint))
    if azure:
        try:
            from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter

            exporters.append(AzureMonitorTraceExporter(connection_string=azure))
        except ImportError:
            print("genaiops: APPLICATIONINSIGHTS_CONNECTION_STRING is set but azure-monitor-opentelemetry-exporter "
                  "is not installed in the image; add it to the flow's requirements.txt", flush=True)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(_filtering_exporter(exporter, capture, redact),
                                                       schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    telemetry = Telemetry(provider, environ)
    telemetry.totals = totals
    if take_over and environ is os.environ:
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                     "APPLICATIONINSIGHTS_CONNECTION_STRING"):
            os.environ.pop(name, None)
    return telemetry


def parse_feedback(body: bytes, max_bytes: int = 16_384) -> dict[str, Any]:
    """A `/feedback` body checked: {trace_id | response_id, rating, label, correction, comment}.
    Raises ValueError with a message for the caller (400)."""
    if len(body) > max_bytes:
        raise ValueError(f"the body is {len(body)} bytes; at most {max_bytes}")
    try:
        doc: object = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("send one JSON object")
    doc = cast("dict[str, Any]", doc)
    unknown = sorted(set(doc) - {"trace_id", "span_id", "response_id", "rating", "label", "correction", "comment"})
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    if not doc.get("trace_id") and not doc.get("response_id"):
        raise ValueError("give trace_id or response_id (the x-genaiops-trace-id / x-genaiops-response-id "
                         "headers of the /score answer)")
    if doc.get("trace_id") is not None and not re.fullmatch(r"[0-9a-f]{32}", str(doc["trace_id"])):
        raise ValueError("trace_id must be 32 lowercase hex digits")
    if doc.get("span_id") is not None and not re.fullmatch(r"[0-9a-f]{16}", str(doc["span_id"])):
        raise ValueError("span_id must be 16 lowercase hex digits")
    if doc.get("response_id") is not None and not re.fullmatch(r"[\w.:-]{1,128}", str(doc["response_id"])):
        raise ValueError("response_id must be 1-128 letters, digits, '.', ':', '_' or '-'")
    rating = doc.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float))
                               or not -1e6 <= rating <= 1e6):
        raise ValueError("rating must be a number")
    for key, limit in (("label", 200), ("comment", 4000)):
        if doc.get(key) is not None and (not isinstance(doc[key], str) or len(doc[key]) > limit):
            raise ValueError(f"{key} must be text of at most {limit} characters")
    return doc
