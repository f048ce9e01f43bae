"""What a Python flow imports from genaiops: OpenAI clients for the use case's connections.

    from genaiops_pyflow import openai_client

    def classify(text, *, temperature=0.0):
        answer = openai_client("llm").chat.completions.create(model="gpt-4o-mini", ...)

The connection's endpoint and key come from `<CONN>_BASE_URL` (OpenAI) or `<CONN>_API_BASE` +
`<CONN>_API_VERSION` (Azure OpenAI) and `<CONN>_API_KEY`: genaiops sets them in batch runs
(whatever its LLM session hands the engine: the simulator, the gateway or a real endpoint), and
a serving container receives them at start, as every engine's image does. The client retries as
genaiops' retry policy says (`GENAIOPS_LLM_MAX_ATTEMPTS`), and each response's token usage is
counted for the line being run. This package needs nothing of genaiops (it runs in images too).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

ENV_ATTEMPTS = "GENAIOPS_LLM_MAX_ATTEMPTS"
_lock = threading.Lock()
_usage = {"prompt_tokens": 0, "completion_tokens": 0}
_clients: dict[Any, Any] = {}


def env_prefix(connection: str) -> str:
    """The `<CONN>_<KEY>` prefix of a connection (spaces become `_`, upper case)."""
    return re.sub(r"\s", "_", connection).upper()


def take_usage() -> dict[str, int]:
    """Tokens counted since the last call (the runtime calls it around each line)."""
    with _lock:
        taken = dict(_usage)
        _usage.update(prompt_tokens=0, completion_tokens=0)
    return taken


def _count(body: bytes) -> None:
    import json

    try:
        usage: dict[str, Any] = json.loads(body).get("usage") or {}
    except (ValueError, AttributeError):
        return
    with _lock:
        _usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        _usage["completion_tokens"] += int(usage.get("completion_tokens") or 0)


def _on_response(response: Any) -> None:
    response.read()
    _count(response.content)


async def _on_async_response(response: Any) -> None:
    await response.aread()
    _count(response.content)


def _settings(connection: str) -> dict[str, Any]:
    prefix, env = env_prefix(connection), os.environ
    key = env.get(f"{prefix}_API_KEY") or "none"
    retries = max(0, int(env.get(ENV_ATTEMPTS, "3")) - 1)
    if env.get(f"{prefix}_API_BASE"):
        return {"azure_endpoint": env[f"{prefix}_API_BASE"], "api_key": key, "max_retries": retries,
                "api_version": env.get(f"{prefix}_API_VERSION") or None}
    if env.get(f"{prefix}_BASE_URL"):
        return {"base_url": env[f"{prefix}_BASE_URL"], "api_key": key, "max_retries": retries}
    raise KeyError(f"no connection named {connection!r}: set {prefix}_BASE_URL (OpenAI) or "
                   f"{prefix}_API_BASE (Azure OpenAI); in genaiops runs, name it in `connections:`")


def tls_context() -> Any:
    """One TLS context per process (loading the CA bundle costs ~0.3 s), made before a batch
    forks its line workers so that they share it."""
    if "tls" not in _clients:
        import ssl

        import certifi

        _clients["tls"] = ssl.create_default_context(cafile=certifi.where())
    return _clients["tls"]


def openai_client(connection: str = "llm", *, asynchronous: bool = False) -> Any:
    """An `openai.OpenAI` (or `AzureOpenAI`; `AsyncOpenAI`... with `asynchronous`) client for the
    connection, made once per process."""
    import httpx
    import openai

    # an async client belongs to one event loop: one per thread (the runtime's loop per thread)
    key = (connection, threading.get_ident() if asynchronous else 0)
    if key not in _clients:
        settings = _settings(connection)
        azure = "azure_endpoint" in settings
        if asynchronous:
            http = httpx.AsyncClient(verify=tls_context(),
                                     event_hooks={"response": [_on_async_response]})
            make = openai.AsyncAzureOpenAI if azure else openai.AsyncOpenAI
            _clients[key] = make(**settings, http_client=http)
        else:
            sync = httpx.Client(verify=tls_context(), event_hooks={"response": [_on_response]})
            made = openai.AzureOpenAI if azure else openai.OpenAI
            _clients[key] = made(**settings, http_client=sync)
    return _clients[key]


def model(connection: str = "llm", default: str = "gpt-4o-mini") -> str:
    """The model (OpenAI) or deployment (Azure OpenAI) configured for the connection, if any."""
    return os.environ.get(f"{env_prefix(connection)}_MODEL") or default
