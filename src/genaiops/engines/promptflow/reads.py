"""What a promptflow flow reads from outside its files: environment variables (`${env:NAME}` in
flow YAML and prompty front matter, `os.environ`/`os.getenv` in its Python code) and the
connections its DAG nodes and prompty model configurations name. Read from the files the flow's
hash covers, without running anything."""

from __future__ import annotations

import re
from typing import Any, cast

import yaml

from genaiops.engines.base import FlowReads, FlowSpec, json_object
from genaiops.engines.envscan import tree_reads

TEXT_SUFFIXES = (".yaml", ".yml", ".prompty")
CONNECTION_REF = re.compile(r"\$\{([A-Za-z0-9_.-]+?)\.[A-Za-z0-9_]+\}")  # ${<connection>.<key>}


def _yaml_documents(text: str, suffix: str) -> list[Any]:
    """The YAML of a flow file (a prompty's front matter); nothing when it does not parse."""
    if suffix == ".prompty":
        parts = text.split("---", 2)
        text = parts[1] if len(parts) == 3 else ""
    try:
        return [yaml.safe_load(text)]
    except yaml.YAMLError:
        return []


def _connections(node: object, where: str, found: dict[str, str]) -> None:
    """Every `connection: <name>` (DAG nodes, variants, prompty configuration) and every
    `${<connection>.<key>}` under an `environment_variables:` block."""
    if (mapping := json_object(node)) is not None:
        for key, value in mapping.items():
            if key == "connection" and isinstance(value, str) and value:
                found.setdefault(value, where)
            elif key == "environment_variables" and (variables := json_object(value)) is not None:
                for item in variables.values():
                    for match in CONNECTION_REF.finditer(item if isinstance(item, str) else ""):
                        found.setdefault(match.group(1), where)
            else:
                _connections(value, where, found)
    elif isinstance(node, list):
        for item in cast("list[object]", node):
            _connections(item, where, found)


def flow_reads(flow: FlowSpec, cache_patterns: tuple[str, ...]) -> FlowReads:
    connections: dict[str, str] = {}

    def references(text: str, suffix: str, shown: str) -> None:
        for document in _yaml_documents(text, suffix):
            _connections(document, shown, connections)

    reads = tree_reads(flow.root, cache_patterns, TEXT_SUFFIXES, references, boundary=flow.boundary)
    return FlowReads(variables=reads.variables, connections=connections, unknown=reads.unknown)
