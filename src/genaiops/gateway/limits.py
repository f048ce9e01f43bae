"""Rate limits of one upstream deployment: token buckets for RPM and TPM, and quotas learned from
the `x-ratelimit-*` headers the upstream sends when the config gives none."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

MINUTE = 60.0


@dataclass(frozen=True)
class Quota:
    """Requests and (estimated) tokens per minute of one deployment; None = unknown."""

    rpm: float | None = None
    tpm: float | None = None
    source: str = "config"  # config | learned

    @property
    def known(self) -> bool:
        return bool(self.rpm or self.tpm)


class TokenBucket:
    """Admits work at `rate` units/s with bursts of at most `capacity`. A request costing more
    than the capacity is admitted when the bucket is full and leaves it in debt, so big requests
    are paced, never starved."""

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate, self.capacity = rate, capacity
        self.level, self.updated = capacity, now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` may be taken (0: now)."""
        self._refill(now)
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.level -= cost

    def give(self, amount: float, now: float) -> None:
        """Refund what a request was charged and did not use (never above capacity)."""
        self._refill(now)
        self.level = min(self.capacity, self.level + max(0.0, amount))

    def debt_seconds(self, now: float) -> float:
        """How long until the bucket is out of debt (0: it is not)."""
        self._refill(now)
        return max(0.0, -self.level / self.rate)

    def drain(self, now: float) -> None:
        """After a 429: no burst when the pause ends."""
        self._refill(now)
        self.level = min(self.level, 0.0)

    def retune(self, rate: float, capacity: float, now: float) -> None:
        self._refill(now)
        self.rate, self.capacity = rate, capacity
        self.level = min(self.level, capacity)


class QuotaLearner:
    """Estimates a deployment's quota from `x-ratelimit-*` response headers.

    `x-ratelimit-limit-requests|tokens` (OpenAI) are the quota itself. `x-ratelimit-remaining-*`
    alone (Azure) say what is left of the minute: what we ourselves sent in the minute before the
    request plus what remains is a lower bound of the quota, and the highest bound seen wins.
    """

    def __init__(self):
        self._sent: deque[tuple[float, float]] = deque()  # (sent at, estimated tokens)
        self._sent_tokens = 0.0
        self.rpm: float | None = None
        self.tpm: float | None = None

    def sent(self, now: float, tokens: float) -> tuple[int, float]:
        """Record a request going out; returns our (requests, tokens) of the last minute,
        this one included, for `observe` to use with its answer."""
        while self._sent and self._sent[0][0] <= now - MINUTE:
            self._sent_tokens -= self._sent.popleft()[1]
        self._sent.append((now, tokens))
        self._sent_tokens += tokens
        return len(self._sent), self._sent_tokens

    def observe(self, headers, ours: tuple[int, float]) -> bool:
        """Learn from one answer's headers; True when the estimate changed."""
        before = (self.rpm, self.tpm)
        for name, ours_used, attr in (("requests", ours[0], "rpm"), ("tokens", ours[1], "tpm")):
            limit = _number(headers.get(f"x-ratelimit-limit-{name}"))
            remaining = _number(headers.get(f"x-ratelimit-remaining-{name}"))
            if limit is not None:
                estimate = limit
            elif remaining is not None:
                estimate = remaining + ours_used
            else:
                continue
            if estimate < 1:  # "1e-300 tokens a minute" would stop every call: not a quota
                continue
            current = getattr(self, attr)
            setattr(self, attr, estimate if current is None else max(current, estimate))
        return (self.rpm, self.tpm) != before

    @property
    def quota(self) -> Quota:
        return Quota(self.rpm, self.tpm, "learned")


def _number(value) -> float | None:
    """A header's number; None when unreadable, negative or not finite (an upstream's `inf` or
    `nan` would plan an infinite or no rate)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None
