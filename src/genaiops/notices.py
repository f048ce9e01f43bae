"""What a user should know that is not an error - a run that is not reused and why, damaged state
that was quarantined and how it recovers - said once, on the `genaiops` logger. The CLI prints
each as `note: ...` on stderr (redacted); a library user gets ordinary logging."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

LOGGER = logging.getLogger("genaiops")


_SAID: set[str] = set()  # `once` notes given in this command (cleared by `printed`)


def notice(message: str, *, once: bool = False) -> None:
    """`once`: not again in the same command (a config loaded for each overlay notes it once)."""
    if once and message in _SAID:
        return
    _SAID.add(message)
    LOGGER.warning(message)


class _Printer(logging.Handler):
    def __init__(self, show: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.show(f"note: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a broken stream must not turn a note into a failure
            self.handleError(record)


@contextlib.contextmanager
def printed(show: Callable[[str], None]) -> Iterator[None]:
    """Notices of the block go to `show` (and not on to the root logger's handlers as well)."""
    handler, propagate = _Printer(show), LOGGER.propagate
    _SAID.clear()
    LOGGER.addHandler(handler)
    LOGGER.propagate = False
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.propagate = propagate
