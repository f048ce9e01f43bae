"""One overall deadline for everything a call does on the upstream's sockets.

httpx's timeouts are per operation: an upstream that never answers holds a call for the whole
read timeout, and one that sends a byte every few seconds holds it forever. The gateway's client
therefore talks through a network backend whose every connect, read and write waits at most until
the current call's deadline, which the call sets for its thread (`bounded_by`): the blocking
operation in progress times out at the deadline, and the call answers its client and frees its
pool slot. httpx does I/O in the calling thread, so a thread-local deadline follows the call
across pooled connections.
"""

from __future__ import annotations

import contextlib
import threading
import time

import httpcore
import httpx

_current = threading.local()
_LAST_GASP = 0.001  # the timeout of an operation started at (or after) the deadline


@contextlib.contextmanager
def bounded_by(deadline: float):
    """Bound the upstream I/O of this thread by `deadline` (time.monotonic) while inside."""
    _current.at = deadline
    try:
        yield
    finally:
        _current.at = None


def passed() -> bool:
    deadline = getattr(_current, "at", None)
    return deadline is not None and time.monotonic() >= deadline


def _bounded(timeout: float | None) -> float | None:
    deadline = getattr(_current, "at", None)
    if deadline is None:
        return timeout
    remaining = max(deadline - time.monotonic(), _LAST_GASP)
    return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend):
        self._inner = inner

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _Stream(self._inner.connect_tcp(host, port, _bounded(timeout), local_address,
                                               socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _Stream(self._inner.connect_unix_socket(path, _bounded(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(client: httpx.Client) -> None:
    """Route every transport of `client` (direct, and proxies from the environment) through the
    deadline backend. httpx has no public hook for a network backend; this sets httpcore's, and
    fails loudly (at gateway start) if a new httpx/httpcore moved it."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if transport is None or pool is None:
            continue
        if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            raise RuntimeError("this httpx/httpcore has no network backend to bound by a deadline; "
                               "the LLM gateway needs httpx 0.28-0.29 with httpcore 1.x")
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)
