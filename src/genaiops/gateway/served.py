"""What actually answered: the `model` (and `system_fingerprint`) of every successful response.

A deployment name or an endpoint URL does not say which model is behind it: Azure OpenAI upgrades
the model version behind a deployment without changing either. The gateway sees every response,
so it notes what each (upstream, deployment) served; run records keep it, and a run is reused only
while the endpoint still serves the same model (`llm_session.probe_models`).

Only the two fields are read, from the start of the body (a JSON answer, or the first events of a
stream); nothing else of the body is kept.
"""

from __future__ import annotations

import re
import threading

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_FINGERPRINT = re.compile(rb'"system_fingerprint"\s*:\s*"([^"\\]{1,200})"')
_PEEK_BYTES = 64 * 1024


def served_model(body: bytes) -> tuple[str | None, str | None]:
    """(model, system_fingerprint) of a response body or stream start; None where absent. The
    answer's text cannot fake them: inside a JSON string their quotes would be escaped."""
    head = body[:_PEEK_BYTES]
    model, fingerprint = _MODEL.search(head), _FINGERPRINT.search(head)
    return (model.group(1).decode("utf-8", "replace") if model else None,
            fingerprint.group(1).decode("utf-8", "replace") if fingerprint else None)


class ServedModels:
    """Per (upstream URL, deployment): the models and fingerprints that answered."""

    def __init__(self):
        self._seen: dict[tuple[str, str], dict[str, set]] = {}
        self._lock = threading.Lock()

    def note(self, key: tuple[str, str], body: bytes) -> None:
        model, fingerprint = served_model(body)
        if model is None:
            return
        with self._lock:
            entry = self._seen.setdefault(key, {"models": set(), "fingerprints": set()})
            entry["models"].add(model)
            if fingerprint:
                entry["fingerprints"].add(fingerprint)

    def tap(self, key: tuple[str, str], response):
        """`response` as the gateway relays it, noting what answered once it was read."""
        if not 200 <= response.status_code < 300:
            return response
        return _Tapped(response, self, key)

    def of_upstream(self, upstream: str) -> dict[str, dict]:
        """{deployment: {"models": [...], "fingerprints": [...]}} seen at `upstream`."""
        with self._lock:
            return {deployment: {name: sorted(values) for name, values in entry.items()}
                    for (url, deployment), entry in sorted(self._seen.items()) if url == upstream}


class _Tapped:
    """An httpx response whose raw chunks are also peeked at (the first 64 KB) as they pass."""

    def __init__(self, response, served: ServedModels, key):
        self._response, self._served, self._key = response, served, key

    def __getattr__(self, name):
        return getattr(self._response, name)

    def iter_raw(self, *args, **kwargs):
        head = bytearray()
        try:
            for chunk in self._response.iter_raw(*args, **kwargs):
                if len(head) < _PEEK_BYTES:
                    head += chunk[:_PEEK_BYTES - len(head)]
                yield chunk
        finally:  # also when the client went away mid-answer
            self._served.note(self._key, bytes(head))
