"""Rules that make the LLM simulator answer deterministically (`configs/<use_case>/simulator.yaml`).

Format (docs/architecture.md)::

    default_reply: "..."            # optional; without it: "[genaiops-simulator] echo: <last user message>"
    tables:                         # optional; NAME -> ordered [{pattern, value}], first match wins
      ticket_category:
        - {pattern: "(?i)refund|invoice", value: billing}
        - {pattern: ".*", value: other}
    rules:                          # optional; first rule that matches wins
      - name: careful               # optional, defaults to "rules[i]"
        when:                       # optional; no `when` matches every request
          prompt: "(?is)ticket:\\s*(?P<text>[^\\n]+)"   # re.search over all message contents joined by "\\n"
          temperature_min: 0.0      # optional inclusive bounds; a request without temperature counts as 1.0
          temperature_max: 0.5
        reply: "{table:ticket_category:text}"
        accuracy: 0.95              # optional; 1 - accuracy of requests (by sha256 of the messages)
                                    # answer another value of each table they look up

Precise semantics (the parts the short format leaves open):

- `reply` placeholders are `{group}` (a named or numbered group of `when.prompt`) and
  `{table:NAME:group}`. `{{` and `}}` are literal braces; any other brace is literal too, so
  JSON replies need no escaping. A group that did not take part in the match is "".
- A `{table:...}` lookup that no table entry matches makes the rule not match: the next rule is
  tried, then `default_reply`. End a table with `{pattern: ".*", value: ...}` to always answer.
- Table values may be strings or numbers (numbers are turned into text); booleans are refused
  because YAML reads `yes`/`no` as booleans: quote them.
- Accuracy: a request is answered wrongly when `u < 1 - accuracy`, where `u` in [0, 1) comes
  from the sha256 of the messages. The same hash picks the wrong value among the table's other
  distinct values. So the same request always gets the same answer, and over many distinct
  requests the fraction answered correctly approaches `accuracy`.

Validation collects every problem (file, line, field, fix) into one `ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from genaiops.errors import ConfigError, Problem

ECHO_PREFIX = "[genaiops-simulator] echo: "
_ECHO_LIMIT = 500
_TOP_KEYS = ("default_reply", "tables", "rules")
_RULE_KEYS = ("name", "when", "reply", "accuracy")
_WHEN_KEYS = ("prompt", "temperature_min", "temperature_max")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# {{ | }} | {table:NAME:group} | {group}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{table:([A-Za-z0-9_-]+):(\w+)\}|\{(\w+)\}")
DEFAULT_TEMPERATURE = 1.0  # what OpenAI assumes when a request sets none


# ---------------------------------------------------------------- request view


def content_text(content) -> str:
    """The text of one message's `content`: a string, None, or a list of parts (vision format)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    return str(content)


def prompt_text(messages: list) -> str:
    """All message contents joined by "\\n": what `when.prompt` is searched in and tokens count."""
    return "\n".join(
        content_text(m.get("content")) if isinstance(m, dict) else "" for m in messages
    )


def request_digest(messages: list) -> bytes:
    """A stable sha256 of the messages (role + text), the seed of every deterministic choice."""
    canonical = [
        [
            m.get("role", "") if isinstance(m, dict) else "",
            content_text(m.get("content")) if isinstance(m, dict) else "",
        ]
        for m in messages
    ]
    data = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).digest()


def unit_from(digest: bytes, offset: int = 0) -> float:
    """A number in [0, 1) from 8 bytes of the digest; different offsets give independent draws."""
    return int.from_bytes(digest[offset : offset + 8], "big") / 2.0**64


def count_tokens(text: str) -> int:
    """The simulator's token count: ceil(chars / 4), at least 1."""
    return max(1, math.ceil(len(text) / 4))


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class TableEntry:
    pattern: re.Pattern
    value: str


@dataclass(frozen=True)
class Table:
    name: str
    entries: tuple[TableEntry, ...]

    @property
    def values(self) -> list[str]:
        """Distinct values in file order: the pool wrong answers are drawn from."""
        return list(dict.fromkeys(e.value for e in self.entries))

    def lookup(self, text: str) -> str | None:
        for entry in self.entries:
            if entry.pattern.search(text):
                return entry.value
        return None


@dataclass(frozen=True)
class Rule:
    name: str
    prompt: re.Pattern | None
    temperature_min: float | None
    temperature_max: float | None
    reply: str
    accuracy: float | None

    def matches_temperature(self, temperature: float) -> bool:
        too_cold = self.temperature_min is not None and temperature < self.temperature_min
        too_hot = self.temperature_max is not None and temperature > self.temperature_max
        return not (too_cold or too_hot)


class Spread:
    """The seeded stochastic mode: a temperature-like `spread` in [0, 1] over the rules' right and
    wrong answers. A rule with `accuracy` answers wrong when u < 1 - accuracy, where u mixes the
    request's own draw (fixed per request) with a fresh seeded draw per call:
    u = (1 - spread) * u_request + spread * u_call. Spread 0 is the deterministic simulator;
    small spreads make only the rows near the cut flaky (rows keep their difficulty); 1 is a coin
    per call. Draws follow `seed` in the order calls arrive."""

    def __init__(self, spread: float, seed: int = 0):
        if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not 0 <= spread <= 1:
            raise ValueError(f"simulator spread must be a number from 0 to 1, not {spread!r}")
        import random
        import threading

        self.spread = float(spread)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, fixed: float) -> float:
        with self._lock:
            fresh = self._random.random()
        return (1.0 - self.spread) * fixed + self.spread * fresh


@dataclass(frozen=True)
class Answer:
    """What the simulator says and why (`rule` is None for the default reply)."""

    content: str
    rule: str | None
    correct: bool = True


@dataclass
class Rules:
    default_reply: str | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    source: str = "<built-in>"

    def answer(self, messages: list, temperature: float | None = None,
               spread: Spread | None = None) -> Answer:
        """The answer to a chat request: the first matching rule, else the default; deterministic
        unless a `spread` (stochastic mode) varies it per call."""
        text = prompt_text(messages)
        temp = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
        digest = None
        for rule in self.rules:
            if not rule.matches_temperature(temp):
                continue
            match = rule.prompt.search(text) if rule.prompt is not None else None
            if rule.prompt is not None and match is None:
                continue
            if digest is None:
                digest = request_digest(messages)
            draw = unit_from(digest, 0) if spread is None else spread.draw(unit_from(digest, 0))
            wrong = rule.accuracy is not None and draw < 1.0 - rule.accuracy
            content = self._render(rule.reply, match, wrong, digest)
            if content is not None:
                return Answer(content, rule.name, correct=not wrong)
        return Answer(self._default(messages), None)

    def _default(self, messages: list) -> str:
        if self.default_reply is not None:
            return self.default_reply
        last_user = next(
            (
                content_text(m.get("content"))
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            prompt_text(messages),
        )
        return ECHO_PREFIX + last_user[:_ECHO_LIMIT]

    def _render(
        self, template: str, match: re.Match | None, wrong: bool, digest: bytes
    ) -> str | None:
        """The reply with placeholders filled, or None when a table lookup finds no entry."""
        failed = False

        def group(name: str) -> str:
            if match is None:
                return ""
            key = int(name) if name.isdigit() else name
            return match.group(key) or ""

        def substitute(m: re.Match) -> str:
            nonlocal failed
            token = m.group(0)
            if token == "{{":
                return "{"
            if token == "}}":
                return "}"
            if m.group(3) is not None:
                return group(m.group(3))
            table = self.tables[m.group(1)]
            value = table.lookup(group(m.group(2)))
            if value is None:
                failed = True
                return ""
            if wrong:
                others = [v for v in table.values if v != value]
                value = others[int(unit_from(digest, 8) * len(others))]
            return value

        rendered = _PLACEHOLDER.sub(substitute, template)
        return None if failed else rendered

    def summary(self) -> str:
        return f"{len(self.rules)} rules, {len(self.tables)} tables"


# ---------------------------------------------------------------- loading + validation


def load_rules(path: Path | str) -> Rules:
    """Read and validate a simulator rules file; every problem is reported in one ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(path, None, None, "rules file not found", "check the path")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, None, None, f"cannot read rules file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(path, line, None, f"not valid YAML: {reason}")]) from None
    return parse_rules({} if data is None else data, source=path, node=node)


def parse_rules(data, *, source: Path | str = "<rules>", node: yaml.Node | None = None) -> Rules:
    """Validate an already-parsed rules mapping (tests and callers holding a dict use this)."""
    checker = _Checker(source, node)
    rules = checker.check(data)
    if checker.problems:
        raise ConfigError(checker.problems)
    return rules


class _Checker:
    """Walks the parsed data, building `Rules` and collecting located problems."""

    def __init__(self, source, node):
        self.source = source
        self.node = node
        self.problems: list[Problem] = []

    def problem(self, path: tuple, message: str, hint: str | None = None) -> None:
        self.problems.append(
            Problem(self.source, self._line(path), _field(path) or None, message, hint)
        )

    def _line(self, path: tuple) -> int | None:
        node = self.node
        for key in path:
            if isinstance(node, yaml.MappingNode) and isinstance(key, str):
                node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(key, int)
                and key < len(node.value)
            ):
                node = node.value[key]
            else:
                node = None
            if node is None:
                return None
        return node.start_mark.line + 1 if node is not None else None

    def check(self, data) -> Rules:
        if not isinstance(data, dict):
            self.problem(
                (), f"must be a mapping with keys {', '.join(_TOP_KEYS)}, not {_kind(data)}"
            )
            return Rules(source=str(self.source))
        self._unknown_keys(data, (), _TOP_KEYS)
        default = data.get("default_reply")
        if default is not None and not isinstance(default, str):
            self.problem(
                ("default_reply",), f"must be a string, not {_kind(default)}", "quote the reply"
            )
            default = None
        tables = self._tables(data.get("tables"))
        rules = self._rules(data.get("rules"), tables)
        return Rules(default_reply=default, tables=tables, rules=rules, source=str(self.source))

    def _unknown_keys(self, mapping: dict, path: tuple, known: tuple) -> None:
        for key in mapping:
            if key not in known:
                self.problem(path + (key,), "unknown key", f"known keys here: {', '.join(known)}")

    def _regex(self, value, path: tuple) -> re.Pattern | None:
        if not isinstance(value, str):
            self.problem(path, f"must be a regular expression string, not {_kind(value)}")
            return None
        try:
            return re.compile(value)
        except re.error as exc:
            self.problem(
                path,
                f"invalid regular expression: {exc}",
                "check the pattern; in YAML double quotes write \\\\ for one backslash",
            )
            return None

    def _tables(self, data) -> dict[str, Table]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problem(
                ("tables",),
                f"must be a mapping of table name to a list of entries, not {_kind(data)}",
            )
            return {}
        tables = {}
        for name, entries in data.items():
            path = ("tables", name)
            if not isinstance(name, str) or not _TABLE_NAME.match(name):
                self.problem(path, "table names may use only letters, digits, '_' and '-'")
                continue
            if not isinstance(entries, list) or not entries:
                self.problem(path, "must be a non-empty list of {pattern, value} entries")
                continue
            parsed = []
            for i, entry in enumerate(entries):
                epath = path + (i,)
                if not isinstance(entry, dict):
                    self.problem(epath, f"must be a mapping {{pattern, value}}, not {_kind(entry)}")
                    continue
                self._unknown_keys(entry, epath, ("pattern", "value"))
                if "pattern" not in entry or "value" not in entry:
                    missing = [k for k in ("pattern", "value") if k not in entry]
                    self.problem(epath, f"missing {' and '.join(missing)}")
                    continue
                pattern = self._regex(entry["pattern"], epath + ("pattern",))
                value = self._value(entry["value"], epath + ("value",))
                if pattern is not None and value is not None:
                    parsed.append(TableEntry(pattern, value))
            tables[name] = Table(name, tuple(parsed))
        return tables

    def _value(self, value, path: tuple) -> str | None:
        if isinstance(value, bool) or value is None:
            self.problem(
                path, f"must be a string, not {_kind(value)}", 'quote it, e.g. value: "yes"'
            )
            return None
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            self.problem(path, f"must be a string, not {_kind(value)}")
            return None
        return value

    def _rules(self, data, tables: dict[str, Table]) -> list[Rule]:
        if data is None:
            return []
        if not isinstance(data, list):
            self.problem(("rules",), f"must be a list of rules, not {_kind(data)}")
            return []
        rules, names = [], set()
        for i, raw in enumerate(data):
            rule = self._rule(raw, ("rules", i), tables)
            if rule is None:
                continue
            if rule.name in names:
                self.problem(
                    ("rules", i, "name"),
                    f"duplicate rule name {rule.name!r}",
                    "give each rule its own name",
                )
            names.add(rule.name)
            rules.append(rule)
        return rules

    def _rule(self, raw, path: tuple, tables: dict[str, Table]) -> Rule | None:
        if not isinstance(raw, dict):
            self.problem(
                path, f"must be a mapping with keys {', '.join(_RULE_KEYS)}, not {_kind(raw)}"
            )
            return None
        before = len(self.problems)
        self._unknown_keys(raw, path, _RULE_KEYS)
        name = raw.get("name", f"rules[{path[1]}]")
        if not isinstance(name, str) or not name:
            self.problem(path + ("name",), "must be a non-empty string")
        prompt, tmin, tmax = self._when(raw.get("when"), path + ("when",))
        reply = raw.get("reply")
        if "reply" not in raw:
            self.problem(
                path + ("reply",),
                "missing",
                'add reply: "..." (may use {group} and {table:NAME:group})',
            )
        elif isinstance(reply, bool) or not isinstance(reply, (str, int, float)):
            self.problem(path + ("reply",), f"must be a string, not {_kind(reply)}")
        else:
            reply = str(reply)
        accuracy = raw.get("accuracy")
        if accuracy is not None and (
            isinstance(accuracy, bool)
            or not isinstance(accuracy, (int, float))
            or not 0.0 <= accuracy <= 1.0
        ):
            self.problem(
                path + ("accuracy",), f"must be a number between 0 and 1, not {accuracy!r}"
            )
            accuracy = None
        if isinstance(reply, str):
            self._placeholders(reply, prompt, tables, accuracy, path)
        if len(self.problems) > before:
            return None
        return Rule(name, prompt, tmin, tmax, reply, None if accuracy is None else float(accuracy))

    def _when(self, when, path: tuple):
        if when is None:
            return None, None, None
        if not isinstance(when, dict):
            self.problem(
                path, f"must be a mapping with keys {', '.join(_WHEN_KEYS)}, not {_kind(when)}"
            )
            return None, None, None
        self._unknown_keys(when, path, _WHEN_KEYS)
        prompt = self._regex(when["prompt"], path + ("prompt",)) if "prompt" in when else None
        bounds = []
        for key in ("temperature_min", "temperature_max"):
            value = when.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                self.problem(path + (key,), f"must be a number, not {_kind(value)}")
                value = None
            bounds.append(None if value is None else float(value))
        tmin, tmax = bounds
        if tmin is not None and tmax is not None and tmin > tmax:
            self.problem(
                path + ("temperature_min",),
                f"temperature_min {tmin} is above temperature_max {tmax}",
            )
        return prompt, tmin, tmax

    def _placeholders(self, reply: str, prompt, tables, accuracy, path: tuple) -> None:
        groups = set(prompt.groupindex) if prompt is not None else set()
        numbered = prompt.groups if prompt is not None else 0
        used_tables = []

        def known_group(name: str) -> bool:
            return int(name) <= numbered if name.isdigit() else name in groups

        for m in _PLACEHOLDER.finditer(reply):
            table_name, table_group, plain = m.group(1), m.group(2), m.group(3)
            group_name = table_group if table_name else plain
            if group_name is None:
                continue  # {{ or }}
            if not known_group(group_name):
                where = (
                    "when.prompt has no"
                    if prompt is not None
                    else "the rule has no when.prompt, so no"
                )
                self.problem(
                    path + ("reply",),
                    f"{m.group(0)} refers to group {group_name!r} but {where} such group",
                    "name a group in when.prompt like (?P<text>...), or write {{ }} for literal braces",
                )
            if table_name is not None:
                if table_name not in tables:
                    self.problem(
                        path + ("reply",),
                        f"{m.group(0)} refers to unknown table {table_name!r}",
                        f"define it under tables: (known: {', '.join(tables) or 'none'})",
                    )
                else:
                    used_tables.append(table_name)
        if accuracy is not None and accuracy < 1.0:
            if not used_tables:
                self.problem(
                    path + ("accuracy",),
                    "needs a {table:NAME:group} placeholder in reply to draw wrong answers from",
                    "remove accuracy or look the answer up in a table",
                )
            for name in used_tables:
                if len(tables[name].values) < 2:
                    self.problem(
                        path + ("accuracy",),
                        f"table {name!r} has fewer than 2 distinct values, so no wrong answer exists",
                        "add values to the table or remove accuracy",
                    )


def _field(path: tuple) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _kind(value) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "empty",
    }.get(type(value), type(value).__name__)
