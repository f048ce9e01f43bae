"""Keep secret values out of everything we print or write.

The config knows which values are secrets (connection api keys); `.env` values whose names look
secret are added too, and the audit key when there is one. `redact()` is applied to every line the
CLI prints and every report it writes; `redact_data()` to every output a flow or evaluator returned
before the ledger or the evaluation store keeps it (a flow can return whatever it can read).
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Mapping

MASK = "***"
# KEYRING names a backend (PYTHON_KEYRING_BACKEND), not a secret
_SECRET_NAME = re.compile(r"(KEY(?!RING)|SECRET|TOKEN|PASSWORD|PASSWD|CONNECTION_STRING|SAS)", re.I)
_MIN_LEN = 4  # shorter values would mask ordinary words


class Redactor:
    def __init__(self):
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern | None = None

    def add(self, *values: str) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= _MIN_LEN:
                    self._values.add(value)
            self._pattern = None

    def keep_only(self, values) -> None:
        """Forget every value but `values` (one process serving several commands, e.g. a test
        session: what one command knew is not another's secret)."""
        with self._lock:
            self._values = set(values)
            self._pattern = None

    def add_env(self, env: Mapping[str, str]) -> None:
        self.add(*(v for k, v in env.items() if v and _SECRET_NAME.search(k)))

    def values(self) -> frozenset[str]:
        """The secret values known so far (to search images and run folders for)."""
        with self._lock:
            return frozenset(self._values)

    def redact(self, text: str) -> str:
        """`text` with every known secret masked, as written raw, inside a JSON string or in HTML."""
        if not self._values or not text:
            return text
        with self._lock:
            if self._pattern is None:
                forms = set()
                for value in self._values:
                    forms |= {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                              html.escape(value)}
                ordered = sorted(forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))
            pattern = self._pattern
        return pattern.sub(MASK, text)

    def redact_data(self, data):
        """A copy of JSON-like `data` (dicts, lists, strings) with every string redacted, keys
        included: what a flow returned, before anything stores it."""
        if not self._values:
            return data
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact_data(k) if isinstance(k, str) else k: self.redact_data(v)
                    for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(item) for item in data]
        return data


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def redact_data(data):
    return REDACTOR.redact_data(data)


def known_secrets() -> frozenset[str]:
    """Every secret value in play: the config's connection keys, `.env` secrets, the audit key."""
    return REDACTOR.values()


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))
