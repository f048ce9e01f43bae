"""OTLP trace export requests (protobuf or JSON) -> `Span`s, decoded with `opentelemetry-proto`.

OTLP/JSON is protobuf's JSON mapping with two exceptions (the OTLP spec): trace and span ids are
hex, not base64, and enum fields may be integers. Both are handled here; anything that does not
decode is `OtlpError` (the receiver answers 400 with its message, never a traceback).
"""

from __future__ import annotations

import base64
import binascii
import json

from genaiops.monitoring.store import Span

ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpError(ValueError):
    pass


def _request_type():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest


def decode_protobuf(body: bytes) -> list[Span]:
    from google.protobuf.message import DecodeError

    request = _request_type()()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise OtlpError(f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
    return _spans(request)


def _hex_ids_to_base64(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str) and value:
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise OtlpError(f"{key} {value[:40]!r} is not hex") from None
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode_json(body: bytes) -> list[Span]:
    from google.protobuf import json_format

    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpError("the body must be a JSON object with resourceSpans")
    request = _request_type()()
    try:
        json_format.ParseDict(_hex_ids_to_base64(doc), request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpError(f"not an OTLP ExportTraceServiceRequest (JSON): {str(exc)[:300]}") from None
    return _spans(request)


def any_value(value):
    """An OTLP AnyValue as a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return binascii.hexlify(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def attributes(kvs) -> dict:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _hex(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size:
        raise OtlpError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw.hex()


def _spans(request) -> list[Span]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                if span.end_time_unix_nano < span.start_time_unix_nano:
                    raise OtlpError(f"span {span.name!r} ends before it starts")
                spans.append(Span(
                    trace_id=_hex(span.trace_id, 16, "traceId"), span_id=_hex(span.span_id, 8, "spanId"),
                    parent_span_id=span.parent_span_id.hex() if span.parent_span_id else "",
                    name=span.name, kind=int(span.kind), start_ns=int(span.start_time_unix_nano),
                    end_ns=int(span.end_time_unix_nano), status_code=int(span.status.code),
                    status_message=span.status.message, attributes=attributes(span.attributes),
                    resource=resource, scope=scope,
                    events=[{"name": e.name, "time_ns": int(e.time_unix_nano),
                             "attributes": attributes(e.attributes)} for e in span.events]))
    return spans
