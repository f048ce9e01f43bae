"""Counters of the LLM gateway, for results, tests and benchmarks (never headers or bodies)."""

from __future__ import annotations

import threading
from collections import Counter


class GatewayStats:
    def __init__(self):
        self._lock = threading.Lock()
        self._requests: Counter = Counter()  # per pool
        self._outcomes: Counter = Counter()  # answered | refused | throttled | server_error | ...
        self._retried = 0  # requests answered after more than one attempt
        self._waited_s = 0.0
        self._max_wait_s = 0.0

    def request(self, pool: str) -> None:
        with self._lock:
            self._requests[pool] += 1

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._waited_s += seconds
            self._max_wait_s = max(self._max_wait_s, seconds)

    def outcome(self, kind: str, *, retried: bool = False) -> None:
        with self._lock:
            self._outcomes[kind] += 1
            self._retried += retried

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": dict(self._requests), "outcomes": dict(self._outcomes),
                    "retried": self._retried, "queue_wait_s": round(self._waited_s, 3),
                    "max_queue_wait_s": round(self._max_wait_s, 3)}
