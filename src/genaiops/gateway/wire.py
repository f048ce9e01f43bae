"""What the gateway reads from an OpenAI / Azure OpenAI request and answer, and nothing more:
the deployment it goes to, its estimated token cost, the tokens the answer used, and the
rate-limit headers of the answer. Bodies and keys are never kept or logged.

Flow code is untrusted, so a JSON request body is checked before it costs anything: valid JSON
(no NaN/Infinity), an object, nested at most `MAX_DEPTH` levels, and the fields the estimate reads
(`max_tokens`, `max_completion_tokens`, `n`, `model`) within bounds; anything else is a
`BadRequest` the client gets as a 400 naming the field."""

from __future__ import annotations

import json
import math
import re

DEFAULT_MAX_TOKENS = 256  # charged when a request sets no max_tokens (an estimate, like Azure's)
MAX_COMPLETION_TOKENS = 1_000_000  # above any model's output limit: more is a mistake or an attack
MAX_N = 128  # OpenAI's own limit on `n`
MAX_DEPTH = 128  # JSON nesting; real requests (tool schemas included) stay far below
_MAX_MODEL_CHARS = 256
_AZURE_DEPLOYMENT = re.compile(r"(?:^|/)openai/deployments/([^/]+)/")
# request headers not forwarded: hop-by-hop (RFC 9110 7.6.1), those the proxy sets itself, and
# accept-encoding (the gateway asks for identity, to read error messages)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                        "accept-encoding"})


class BadRequest(Exception):
    """A request the gateway refuses before sending it (400), `param` naming the field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def deployment_of(path: str, body: dict | None) -> str:
    """Azure: the deployment in the path; OpenAI: the body's `model`."""
    match = _AZURE_DEPLOYMENT.search(path)
    if match:
        return match.group(1)
    model = (body or {}).get("model")
    return str(model) if model else "default"


def parse_body(raw: bytes) -> dict | None:
    """A JSON object, or None (not JSON, nested too deep, not an object): for reading answers."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def read_request(raw: bytes) -> dict | None:
    """The checked JSON body of a request (None when empty); raises BadRequest saying what is
    wrong and where."""
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"the JSON body is nested too deep (the gateway accepts {MAX_DEPTH} "
                         "levels)") from None
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the JSON body must be an object, not {type(data).__name__}")
    unsound = _walk(data)
    _check_fields(data)
    if unsound:
        raise BadRequest(f"{unsound} is not a finite number (NaN and Infinity are not JSON)",
                         unsound)
    return data


def _walk(data) -> str | None:
    """Checks the nesting depth without recursion; returns the path of the first non-finite
    number (Python's json reads NaN, Infinity and 1e999), if any."""
    stack, found = [(data, "", 1)], None
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"the JSON body is nested deeper than {MAX_DEPTH} levels (at {path})")
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value) and found is None:
            found = path or "the body"
    return found


def _whole(value, low: int, high: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return low <= value <= high


def _shown(value) -> str:
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fields(body: dict) -> None:
    """The fields the estimate reads: absurd values would put the quota in debt for hours."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and not _whole(value, 0, MAX_COMPLETION_TOKENS):
            raise BadRequest(f"{name} must be a whole number from 0 to {MAX_COMPLETION_TOKENS:,}, "
                             f"not {_shown(value)}", name)
    n = body.get("n")
    if n is not None and not _whole(n, 1, MAX_N):
        raise BadRequest(f"n must be a whole number from 1 to {MAX_N}, not {_shown(n)}", "n")
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str) or not 0 < len(model) <= _MAX_MODEL_CHARS:
            raise BadRequest(f"model must be a name of 1 to {_MAX_MODEL_CHARS} characters, "
                             f"not {_shown(model)}", "model")
        try:
            model.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("model is not valid text (it holds a lone surrogate)", "model") from None


def _text_chars(value) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):  # content parts: {"type": "text", "text": ...}
        return _text_chars(value.get("text") or value.get("content") or "")
    return 0


def estimated_tokens(body: dict | None) -> int:
    """Prompt (~4 characters a token, plus a few per message) plus the most the answer may use;
    an embedding request (`input`) has no answer to allow for."""
    if not body:
        return 1
    messages = body.get("messages")
    if isinstance(messages, list):
        prompt = sum(math.ceil(_text_chars(m.get("content")) / 4) + 4 for m in messages
                     if isinstance(m, dict))
    elif "prompt" in body:
        prompt = math.ceil(_text_chars(body.get("prompt")) / 4)
    else:
        return max(1, math.ceil(_text_chars(body.get("input") or "") / 4))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = int(limit) if _whole(limit, 0, MAX_COMPLETION_TOKENS) else DEFAULT_MAX_TOKENS
    n = int(body["n"]) if _whole(body.get("n"), 1, MAX_N) else 1
    return prompt + completion * n


def retry_after_seconds(headers) -> float | None:
    """`retry-after-ms` (Azure), else `Retry-After` in seconds; None when absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: not worth parsing for an LLM endpoint
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def error_message(raw: bytes) -> str:
    """The upstream's own error message (OpenAI error shape), else a short excerpt."""
    data = parse_body(raw)
    error = (data or {}).get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    return raw[:300].decode("utf-8", errors="replace").strip() or "no message"
