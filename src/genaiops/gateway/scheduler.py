"""Who may send the next request to one upstream deployment, and when.

One `Upstream` per endpoint + deployment holds:
- token buckets for its quota (RPM, and TPM charged by *estimated* tokens: prompt + max_tokens,
  which is what Azure charges on arrival), at `utilization` of the quota. One request is charged
  at most one minute of the TPM quota, so no request can put the bucket in debt for longer, and
  is refunded whole when the upstream did not count it (it failed or was refused); an answer keeps
  its charge, as Azure OpenAI counts the estimate, not the usage, against the minute;
- a pause until the end of the last 429's `retry-after(-ms)` (at most `MAX_PAUSE_SEC`), during
  which nothing is sent;
- one pool per kind of caller (the flow under test, LLM-judge evaluators), each with its own
  queue and its own AIMD concurrency limit: +1 per success until the first 429 (slow start),
  then +1/limit per success; halved by a 429 (at most once per pause);
- fairness: when several pools wait, the one served least recently goes first, so a flood of
  one pool's requests cannot starve the other.

Requests of one pool are granted in arrival order (a big request is never overtaken forever).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from genaiops.gateway.limits import MINUTE, Quota, QuotaLearner, TokenBucket

_FOREVER = 1.0  # re-check at least this often while waiting for a notification
MAX_PAUSE_SEC = MINUTE  # a 429's Retry-After of days would stop every call of the command


class QueueDeadline(Exception):
    """The request's time bound passed while it waited for its turn."""


@dataclass(frozen=True)
class SchedulerSettings:
    utilization: float = 0.95  # plan for this fraction of a known quota
    burst_sec: float = 0.1  # bucket capacity, in seconds of quota
    initial_concurrency: int = 4  # per pool, until successes raise it
    max_concurrency: int = 256
    rate_floor: float = 0.5  # 429s despite the buckets lower the planned rate at most to this


@dataclass
class _Pool:
    name: str
    limit: float
    in_flight: int = 0
    waiting: deque = field(default_factory=deque)
    served: int = -1  # turn number of its last grant
    throttled_once: bool = False

    @property
    def room(self) -> bool:
        return self.in_flight < max(1, math.floor(self.limit))


@dataclass
class Grant:
    pool: str
    cost: float
    waited_s: float
    ours: tuple[int, float]  # our (requests, tokens) in the minute up to this one (learning)


class Upstream:
    def __init__(self, key: tuple[str, str], quota: Quota | None, settings: SchedulerSettings):
        self.key = key
        self.settings = settings
        self.configured = quota if quota and quota.known else None
        self.learner = QuotaLearner()
        self._cond = threading.Condition()
        self._pools: dict[str, _Pool] = {}
        self._turns = itertools.count()
        self._paused_until = 0.0
        self._hold_decrease_until = 0.0
        self._rate_factor = 1.0
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self._retune(time.monotonic())

    # -- quota

    @property
    def quota(self) -> Quota | None:
        if self.configured is not None:
            return self.configured
        learned = self.learner.quota
        return learned if learned.known else None

    def _retune(self, now: float) -> None:
        quota = self.quota
        factor = self.settings.utilization * self._rate_factor
        self._requests = self._bucket(self._requests, quota and quota.rpm, factor, now, floor=1.0)
        self._tokens = self._bucket(self._tokens, quota and quota.tpm, factor, now, floor=0.0)

    def _bucket(self, bucket, per_minute, factor, now, floor):
        if not per_minute:
            return None
        rate = per_minute / MINUTE * factor
        capacity = max(floor, rate * self.settings.burst_sec)
        if bucket is None:
            return TokenBucket(rate, capacity, now)
        bucket.retune(rate, capacity, now)
        return bucket

    # -- granting

    def acquire(self, pool: str, cost: float, deadline: float) -> Grant:
        """Wait for this request's turn; raises QueueDeadline when `deadline` (monotonic) passes.
        The grant's cost is what was charged: `cost`, at most one minute of the TPM quota."""
        started = time.monotonic()
        ticket = object()
        with self._cond:
            if self._tokens is not None:
                cost = min(cost, self._tokens.rate * MINUTE)
            state = self._pools.get(pool)
            if state is None:
                state = self._pools[pool] = _Pool(pool, float(self.settings.initial_concurrency))
            state.waiting.append(ticket)
            try:
                while True:
                    now = time.monotonic()
                    wait = self._wait_for(state, ticket, cost, now)
                    if wait <= 0:
                        return self._grant(state, cost, now, started)
                    if now >= deadline:
                        raise QueueDeadline(f"waited {now - started:.1f} s for a turn")
                    self._cond.wait(min(wait, deadline - now))
            finally:
                if ticket in state.waiting:
                    state.waiting.remove(ticket)
                    self._cond.notify_all()

    def _wait_for(self, state: _Pool, ticket, cost: float, now: float) -> float:
        if state.waiting[0] is not ticket or not state.room:
            return _FOREVER
        for other in self._pools.values():
            if other is not state and other.waiting and other.room and other.served < state.served:
                return _FOREVER  # its turn first
        waits = [self._paused_until - now]
        if self._requests is not None:
            waits.append(self._requests.wait(1, now))
        if self._tokens is not None:
            waits.append(self._tokens.wait(cost, now))
        return max(waits)

    def _grant(self, state: _Pool, cost: float, now: float, started: float) -> Grant:
        state.waiting.popleft()
        state.in_flight += 1
        state.served = next(self._turns)
        if self._requests is not None:
            self._requests.take(1, now)
        if self._tokens is not None:
            self._tokens.take(cost, now)
        ours = self.learner.sent(now, cost)
        self._cond.notify_all()
        return Grant(state.name, cost, now - started, ours)

    # -- outcomes

    def succeeded(self, grant: Grant, headers) -> None:
        """An answer: its estimate stays charged (what the upstream counts against the minute)."""
        with self._cond:
            state = self._pools[grant.pool]
            state.in_flight -= 1
            if state.limit < self.settings.max_concurrency:
                state.limit += (1.0 / state.limit) if state.throttled_once else 1.0
                state.limit = min(state.limit, float(self.settings.max_concurrency))
            self._rate_factor = min(1.0, self._rate_factor + 0.002)
            self._learn(headers, grant)
            self._cond.notify_all()

    def throttled(self, grant: Grant, retry_after_s: float | None, headers) -> None:
        """A 429: pause everyone until retry-after, drain the buckets, halve this pool's limit."""
        with self._cond:
            now = time.monotonic()
            state = self._pools[grant.pool]
            state.in_flight -= 1
            pause = min(retry_after_s if retry_after_s is not None else 1.0, MAX_PAUSE_SEC)
            self._refund(grant.cost)  # refused: it used nothing (the drain below still applies)
            self._paused_until = max(self._paused_until, now + pause)
            if now >= self._hold_decrease_until:  # one decrease per burst of 429s
                state.limit = max(1.0, state.limit / 2)
                state.throttled_once = True
                if self.quota is not None:  # the quota's buckets let this through: plan lower
                    self._rate_factor = max(self.settings.rate_floor, self._rate_factor * 0.9)
                self._hold_decrease_until = now + max(pause, 0.5)
            self._learn(headers, grant)
            self._retune(now)
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.drain(now)
            self._cond.notify_all()

    def failed(self, grant: Grant) -> None:
        """An answer that says nothing about the quota (4xx, 5xx, connection error, the deadline):
        the estimate is refunded whole."""
        with self._cond:
            self._pools[grant.pool].in_flight -= 1
            self._refund(grant.cost)
            self._cond.notify_all()

    def _refund(self, tokens: float) -> None:
        if self._tokens is not None and tokens > 0:
            self._tokens.give(tokens, time.monotonic())

    def _learn(self, headers, grant: Grant) -> None:
        if headers is not None and self.learner.observe(headers, grant.ours) and self.configured is None:
            self._retune(time.monotonic())

    def snapshot(self) -> dict:
        with self._cond:
            quota = self.quota
            return {
                "quota": None if quota is None else {"rpm": quota.rpm, "tpm": quota.tpm,
                                                     "source": quota.source},
                "planned_fraction": round(self.settings.utilization * self._rate_factor, 3),
                "paused_for_s": round(max(0.0, self._paused_until - time.monotonic()), 3),
                "tpm_debt_s": 0.0 if self._tokens is None
                else round(self._tokens.debt_seconds(time.monotonic()), 3),
                "pools": {name: {"limit": round(p.limit, 1), "in_flight": p.in_flight,
                                 "waiting": len(p.waiting)} for name, p in self._pools.items()},
            }
