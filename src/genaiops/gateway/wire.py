"""What the gateway reads from an OpenAI / Azure OpenAI request and answer, and nothing more:
the deployment it goes to, its estimated token cost, and the rate-limit headers of the answer.
Bodies and keys are never kept or logged."""

from __future__ import annotations

import json
import math
import re

DEFAULT_MAX_TOKENS = 256  # charged when a request sets no max_tokens (an estimate, like Azure's)
_AZURE_DEPLOYMENT = re.compile(r"(?:^|/)openai/deployments/([^/]+)/")
# request headers not forwarded: hop-by-hop (RFC 9110 7.6.1), those the proxy sets itself, and
# accept-encoding (the gateway asks for identity, to read error messages)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
                        "accept-encoding"})


def deployment_of(path: str, body: dict | None) -> str:
    """Azure: the deployment in the path; OpenAI: the body's `model`."""
    match = _AZURE_DEPLOYMENT.search(path)
    if match:
        return match.group(1)
    model = (body or {}).get("model")
    return str(model) if model else "default"


def parse_body(raw: bytes) -> dict | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


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
    completion = int(limit) if isinstance(limit, (int, float)) and not isinstance(limit, bool) \
        else DEFAULT_MAX_TOKENS
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
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
