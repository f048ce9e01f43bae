"""YAML loading that remembers where every value came from, so errors can name file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from genaiops.errors import ConfigError, Problem

JsonPath = tuple  # ("datasets", 0, "source")


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: `api_version: 2024-06-01` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class SourceMap:
    """Maps a JSON path to the (file, line) where its value was written."""

    locations: dict = field(default_factory=dict)

    def locate(self, path: JsonPath) -> tuple[Path | None, int | None]:
        path = tuple(path)
        while True:
            if path in self.locations:
                return self.locations[path]
            if not path:
                return None, None
            path = path[:-1]

    def merge_block(self, other: "SourceMap", key: str) -> None:
        """Take the locations of top-level block `key` from `other` (an overlay replacing it)."""
        self.locations = {p: loc for p, loc in self.locations.items() if not (p and p[0] == key)}
        self.locations.update({p: loc for p, loc in other.locations.items() if p and p[0] == key})


def format_path(path: JsonPath) -> str:
    """("datasets", 0, "source") -> "datasets[0].source"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml_file(path: Path, display: Path | str) -> tuple[object, SourceMap]:
    """Parse `path`; malformed YAML or duplicate keys become a ConfigError naming file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(display, None, None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(display, None, None, f"cannot read file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(
            [Problem(display, line, None, f"malformed YAML: {reason}", "fix the YAML syntax")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(display, None, None, f"malformed YAML: {exc}")]) from None
    sources = SourceMap()
    if node is None:
        return {}, sources
    problems: list[Problem] = []
    value = _construct(node, (), Path(display), sources, problems)
    if problems:
        raise ConfigError(problems)
    return value, sources


def _construct(node, path, display, sources: SourceMap, problems):
    sources.locations[path] = (display, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                problems.append(
                    Problem(display, key_node.start_mark.line + 1, format_path(path + (key,)),
                            "duplicate key", "keep one definition of this key")
                )
                continue
            result[key] = _construct(value_node, path + (key,), display, sources, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(child, path + (index,), display, sources, problems)
            for index, child in enumerate(node.value)
        ]
    return _scalar(node)


def _scalar(node):
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
