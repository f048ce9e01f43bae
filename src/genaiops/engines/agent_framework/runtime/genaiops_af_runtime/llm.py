"""Chat clients for an app's connections, configured by genaiops rather than by the app.

An app asks `llm.chat_client("llm", model=...)` for the connection named in the use case config;
the endpoint is whatever genaiops' LLM session gives (the simulator, a gateway, Azure OpenAI or
OpenAI), so switching endpoints never edits the app. Every client carries two middlewares:

- `RetryMiddleware`: genaiops' retry policy (`runtime.retries`) for 429/5xx/timeouts, honouring
  `retry-after(-ms)`; the openai SDK's own retries are off (`max_retries=0`) so nothing retries
  behind genaiops' back;
- `UsageMiddleware`: adds each response's usage to the `Usage` of the line being run (a context
  variable, inherited by the tasks a workflow starts), which is how a line's tokens are known.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass

from agent_framework import ChatMiddleware

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0


@dataclass
class Usage:
    """Tokens of one line (all LLM calls it made)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, details) -> None:
        details = details or {}
        self.prompt_tokens += int(details.get("input_token_count") or 0)
        self.completion_tokens += int(details.get("output_token_count") or 0)
        self.calls += 1


CURRENT_USAGE: contextvars.ContextVar[Usage | None] = contextvars.ContextVar(
    "genaiops_line_usage", default=None)


class UsageMiddleware(ChatMiddleware):
    async def process(self, context, call_next) -> None:
        await call_next()
        usage = CURRENT_USAGE.get()
        if usage is not None and context.result is not None:
            usage.add(getattr(context.result, "usage_details", None))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_sec: float = 0.5


def _status_and_delay(exc: BaseException) -> tuple[int | None, float | None]:
    """The HTTP status behind an exception (the SDK's, possibly wrapped) and its retry-after."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        if status is None and response is not None:
            status = getattr(response, "status_code", None)
        if status is not None:
            return int(status), _retry_after(response)
        if type(exc).__name__ in ("APITimeoutError", "APIConnectionError", "TimeoutError"):
            return 408, None
        exc = exc.__cause__ or exc.__context__
    return None, None


def _retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(MAX_RETRY_AFTER_S, max(0.0, float(value) * scale))
            except ValueError:
                continue
    return None


class RetryMiddleware(ChatMiddleware):
    """Retries a chat call that failed with a retryable status; gives up with the real cause."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    async def process(self, context, call_next) -> None:
        attempts = max(1, self.policy.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                await call_next()
                return
            except Exception as exc:
                status, delay = _status_and_delay(exc)
                if status not in RETRYABLE_STATUS:
                    raise
                if attempt == attempts:
                    raise RuntimeError(f"gave up after {attempts} attempt(s): HTTP {status} "
                                       f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(delay if delay is not None
                                    else self.policy.backoff_sec * 2 ** (attempt - 1))


def env_prefix(connection_name: str) -> str:
    """`<CONN>_<KEY>` variables override a connection (the promptflow image's convention)."""
    return "".join("_" if ch.isspace() else ch for ch in connection_name).upper()


class Connections:
    """The use case's connections: [{name, type, endpoint, api_key, api_version, model}]."""

    def __init__(self, connections: list[dict], policy: RetryPolicy, timeout_s: float = 120.0):
        self._connections = {c["name"]: c for c in connections}
        self.policy = policy
        self.timeout_s = timeout_s
        self._clients: dict = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._connections)

    def chat_client(self, name: str = "llm", model: str | None = None):
        """An Agent Framework chat client (Chat Completions API) for connection `name`;
        `model` is the model (OpenAI) or deployment (Azure OpenAI)."""
        if name not in self._connections:
            raise KeyError(f"no connection named {name!r} in the use case config "
                           f"(connections: {', '.join(self.names) or 'none'})")
        conn = self._connections[name]
        model = model or conn.get("model")
        if not model:
            raise ValueError(f"chat_client({name!r}) needs a model (or deployment) name")
        key = (name, model)
        if key not in self._clients:
            self._clients[key] = self._make(conn, model)
        return self._clients[key]

    def _make(self, conn: dict, model: str):
        from agent_framework.openai import OpenAIChatCompletionClient
        from openai import AsyncAzureOpenAI, AsyncOpenAI

        key = conn.get("api_key") or "none"
        if conn["type"] == "open_ai":
            raw = AsyncOpenAI(base_url=conn["endpoint"], api_key=key, max_retries=0,
                              timeout=self.timeout_s, organization=conn.get("organization"))
        else:
            raw = AsyncAzureOpenAI(azure_endpoint=conn["endpoint"], api_key=key,
                                   api_version=conn.get("api_version") or None, max_retries=0,
                                   timeout=self.timeout_s)
        return OpenAIChatCompletionClient(model=model, async_client=raw,
                                          middleware=[RetryMiddleware(self.policy),
                                                      UsageMiddleware()])

    async def close(self) -> None:
        for client in self._clients.values():
            raw = getattr(client, "client", None) or getattr(client, "async_client", None)
            close = getattr(raw, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing is best effort at exit
                    pass
        self._clients.clear()
