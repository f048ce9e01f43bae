"""A deployment quota enforced the way Azure OpenAI does it, for the LLM simulator.

Azure charges a request when it arrives, by its *estimated* tokens (the prompt plus `max_tokens`),
and enforces requests per minute and tokens per minute over short windows rather than over a
whole minute. Here, per deployment:

- requests: at most `rpm * request_window_sec / 60` (at least 1) in any `request_window_sec`;
- tokens: at most `tpm * token_window_sec / 60` estimated tokens in any `token_window_sec`
  (a request larger than that is admitted only into an empty window);
- a refused request is not charged; it gets 429 with `retry-after-ms` (and `Retry-After` in
  seconds): the time until the windows would admit it;
- every answer carries `x-ratelimit-remaining-requests` and `x-ratelimit-remaining-tokens`: what
  is left of the per-minute quota over the last 60 s.

Estimated tokens are `ceil(chars / 4)` of the prompt plus `max_tokens`
(`DEFAULT_MAX_TOKENS` when the request sets none) times `n`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from genaiops.errors import UsageError

DEFAULT_MAX_TOKENS = 256
MINUTE = 60.0


@dataclass(frozen=True)
class QuotaSpec:
    rpm: int | None = None
    tpm: int | None = None
    request_window_sec: float = 1.0
    token_window_sec: float = 10.0

    def __post_init__(self):
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"simulator quota {name} must be a positive integer, not {value!r}")
        for name in ("request_window_sec", "token_window_sec"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MINUTE:
                raise UsageError(f"simulator quota {name} must be a number in (0, 60], not {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)


@dataclass(frozen=True)
class Decision:
    admitted: bool
    retry_after_s: float  # 0 when admitted
    remaining_requests: int | None
    remaining_tokens: int | None

    def headers(self) -> dict:
        headers = {}
        if self.remaining_requests is not None:
            headers["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
        if self.remaining_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
        if not self.admitted:
            headers["retry-after-ms"] = str(max(1, math.ceil(self.retry_after_s * 1000)))
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


class _Deployment:
    def __init__(self, spec: QuotaSpec):
        self.spec = spec
        self.charges: deque[tuple[float, int]] = deque()  # (arrival, estimated tokens), last minute

    def _since(self, start: float) -> list[tuple[float, int]]:
        return [c for c in self.charges if c[0] > start]

    def decide(self, now: float, tokens: int) -> Decision:
        while self.charges and self.charges[0][0] <= now - MINUTE:
            self.charges.popleft()
        spec, waits = self.spec, [0.0]
        if spec.rpm:
            window = spec.request_window_sec
            allowed = max(1, math.floor(spec.rpm * window / MINUTE))
            recent = self._since(now - window)
            if len(recent) + 1 > allowed:  # wait until the oldest that must leave has left
                waits.append(recent[len(recent) - allowed][0] + window - now)
        if spec.tpm:
            window = spec.token_window_sec
            allowed = spec.tpm * window / MINUTE
            recent = self._since(now - window)
            used = sum(t for _, t in recent)
            if recent and used + tokens > allowed:
                freed, wait = 0, recent[-1][0] + window - now
                for arrival, charged in recent:
                    freed += charged
                    if used - freed + tokens <= allowed:
                        wait = arrival + window - now
                        break
                waits.append(wait)
        admitted = max(waits) <= 0
        if admitted:
            self.charges.append((now, tokens))
        minute_requests = len(self.charges)
        minute_tokens = sum(t for _, t in self.charges)
        return Decision(
            admitted, 0.0 if admitted else max(waits),
            max(0, spec.rpm - minute_requests) if spec.rpm else None,
            max(0, spec.tpm - minute_tokens) if spec.tpm else None)


class QuotaBook:
    """The quota state of every deployment the simulator has seen; thread-safe."""

    def __init__(self, spec: QuotaSpec | None = None):
        self.spec = spec or QuotaSpec()
        self._lock = threading.Lock()
        self._deployments: dict[str, _Deployment] = {}

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    def decide(self, deployment: str, tokens: int, now: float | None = None) -> Decision:
        with self._lock:
            state = self._deployments.setdefault(deployment, _Deployment(self.spec))
            return state.decide(time.monotonic() if now is None else now, tokens)


def estimated_tokens(prompt_tokens: int, max_tokens: float | None, n: int = 1) -> int:
    """What Azure charges on arrival: the prompt plus the most the answer may use."""
    completion = DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)
    return prompt_tokens + completion * max(1, n)
