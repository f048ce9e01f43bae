"""Counters the simulator keeps so tests and benchmarks can see what clients really sent.

Only completion requests are counted (not /health or /_simulator/*). Nothing here ever holds
a request header, so API keys cannot leak through stats.
"""

from __future__ import annotations

import threading
import time
from collections import Counter


class Stats:
    """Thread-safe request, status, rule, fault, quota and token counters, peak concurrency, and
    when the first and last answers left (achieved throughput = answers / that span)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._by_status: Counter = Counter()
            self._by_rule: Counter = Counter()
            self._faults: Counter = Counter()
            self._prompt_tokens = 0
            self._completion_tokens = 0
            self._in_flight = 0
            self._peak_in_flight = 0
            self._throttled = 0
            self._charged = 0
            self._first_answer: float | None = None
            self._last_answer: float | None = None

    # -- recording (called by the request handler)

    def begin(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def end(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def status(self, code: int) -> None:
        with self._lock:
            self._by_status[str(code)] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def throttled(self) -> None:
        """A request refused by the simulated quota (429)."""
        with self._lock:
            self._throttled += 1

    def charged(self, tokens: int) -> None:
        """Estimated tokens the simulated quota charged an admitted request."""
        with self._lock:
            self._charged += tokens

    def answered(self, rule: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        now = time.time()
        with self._lock:
            self._first_answer = self._first_answer or now
            self._last_answer = now
            self._by_rule[rule or "<default>"] += 1
            self._prompt_tokens += prompt_tokens
            self._completion_tokens += completion_tokens

    # -- reading

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "simulator": True,
                "requests": self._requests,
                "by_status": dict(self._by_status),
                "by_rule": dict(self._by_rule),
                "faults_injected": dict(self._faults),
                "prompt_tokens": self._prompt_tokens,
                "completion_tokens": self._completion_tokens,
                "total_tokens": self._prompt_tokens + self._completion_tokens,
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "throttled": self._throttled,
                "charged_tokens": self._charged,
                "first_answer_at": self._first_answer,
                "last_answer_at": self._last_answer,
            }
