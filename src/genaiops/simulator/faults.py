"""Fault injection for the LLM simulator: 429 with Retry-After, 500, slow answers (timeouts), and a
401 that echoes the presented key in its body, as a careless endpoint does (OpenAI's 401 names the
key it refused): the test that genaiops keeps such echoes out of every file it and promptflow write.

A fault applies to completion requests only (never to /health or /_simulator/*). Faults are
checked in the order they were added; the first one that fires is used, and checking and
consuming happen under one lock, so `count=2` means exactly two requests fail even when many
arrive at once.

- `count`: how many matching requests fail (None = every one, until cleared).
- `match`: a regex searched in the prompt (all message contents joined by "\\n"); only
  requests it finds are candidates.
- `rate`: the fraction of candidates that fail, chosen deterministically by arrival order:
  the n-th candidate fails when floor(n * rate) > floor((n - 1) * rate). Exactly
  floor(N * rate) of N candidates fail, and a retried request is not doomed to fail again
  (which a hash of the request would do).
- `retry_after` (429): seconds sent in `Retry-After` (and `retry-after-ms`); fractions are
  allowed to keep tests fast (clients, promptflow-tools included, parse it as a float).
- `seconds` (timeout): how long the simulator sleeps before answering normally; set it above
  the client's timeout to trip it. Stopping the server cuts the sleep short.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field

from genaiops.errors import UsageError

KINDS = ("429", "500", "timeout", "401")
_FIELDS = ("kind", "count", "match", "rate", "retry_after", "seconds")


@dataclass
class Fault:
    kind: str
    count: int | None = None
    match: re.Pattern | None = None
    rate: float | None = None
    retry_after: float = 1.0
    seconds: float = 30.0
    seen: int = field(default=0, compare=False)  # candidates so far (drives `rate`)
    fired: int = field(default=0, compare=False)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "count": self.count,
            "match": self.match.pattern if self.match is not None else None,
            "rate": self.rate,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "fired": self.fired,
        }


def make_fault(kind, count=None, match=None, rate=None, retry_after=1.0, seconds=30.0) -> Fault:
    """A validated Fault; a bad value raises UsageError naming the field."""
    kind = str(kind).strip().lower()
    if kind not in KINDS:
        raise UsageError(f"fault kind {kind!r} is not one of {', '.join(KINDS)}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise UsageError(f"fault count must be a positive integer or null (forever), not {count!r}")
    pattern = None
    if match is not None:
        if not isinstance(match, str):
            raise UsageError(f"fault match must be a regular expression string, not {match!r}")
        try:
            pattern = re.compile(match)
        except re.error as exc:
            raise UsageError(f"fault match is not a valid regular expression: {exc}") from None
    if rate is not None and (not _number(rate) or not 0.0 < rate <= 1.0):
        raise UsageError(f"fault rate must be a number in (0, 1], not {rate!r}")
    if not _number(retry_after) or retry_after < 0:
        raise UsageError(f"fault retry_after must be a number of seconds >= 0, not {retry_after!r}")
    if not _number(seconds) or seconds < 0:
        raise UsageError(f"fault seconds must be a number >= 0, not {seconds!r}")
    return Fault(
        kind,
        count,
        pattern,
        None if rate is None else float(rate),
        float(retry_after),
        float(seconds),
    )


def fault_from_dict(data) -> Fault:
    """Parse one fault sent as JSON to POST /_simulator/faults."""
    if not isinstance(data, dict):
        raise UsageError('a fault must be a JSON object like {"kind": "429", "count": 2}')
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown fault field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
        )
    if "kind" not in data:
        raise UsageError(f"a fault needs a kind: one of {', '.join(KINDS)}")
    return make_fault(**data)


class FaultSet:
    """The faults in force; thread-safe. `take(prompt)` returns the fault to apply, if any."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind, count=None, match=None, rate=None, retry_after=1.0, seconds=30.0) -> Fault:
        fault = make_fault(kind, count, match, rate, retry_after, seconds)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, prompt: str) -> Fault | None:
        """Check and consume in one step; a fault whose count is used up is removed."""
        with self._lock:
            for fault in self._faults:
                if fault.match is not None and not fault.match.search(prompt):
                    continue
                fault.seen += 1
                if fault.rate is not None:
                    n = fault.seen
                    if math.floor(n * fault.rate + 1e-9) <= math.floor((n - 1) * fault.rate + 1e-9):
                        continue
                fault.fired += 1
                if fault.count is not None and fault.fired >= fault.count:
                    self._faults.remove(fault)
                return fault
        return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
