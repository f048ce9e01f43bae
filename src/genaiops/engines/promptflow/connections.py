"""Create or update the config's connections in promptflow's local connection store.

Flows refer to connections by name (`connection: llm`), so switching from the LLM simulator to
Azure OpenAI or OpenAI is a change of connection values in `.env`, never of the flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from genaiops.engines.base import ConnectionSettings
from genaiops.engines.promptflow.env import prepare_promptflow
from genaiops.errors import GenaiopsError


@dataclass(frozen=True)
class ConnectionValues:
    """What the store needs of a config connection, in a form that travels to a worker process
    over its stdin pipe (never through a file: `api_key` is a secret)."""

    name: str
    type: str
    api_key: str
    api_version: str
    extra: dict[str, Any] = field(default_factory=dict[str, Any])
    public_view: dict[str, Any] = field(default_factory=dict[str, Any])
    uses_simulator: bool = False

    @classmethod
    def of(cls, connection: ConnectionSettings) -> ConnectionValues:
        return cls(connection.name, connection.type, connection.api_key, connection.api_version,
                   dict(connection.extra), connection.public(), connection.uses_simulator)

    def public(self) -> dict[str, Any]:
        return dict(self.public_view)


def _entity(connection: ConnectionSettings, endpoint: str) -> Any:
    """promptflow's connection entity (promptflow ships no type information: `Any` here)."""
    from promptflow.entities import (  # pyright: ignore[reportMissingTypeStubs]
        AzureOpenAIConnection,
        OpenAIConnection,
    )

    if connection.type == "open_ai":
        return cast(Any, OpenAIConnection)(name=connection.name, api_key=connection.api_key or "none",
                                base_url=endpoint,
                                organization=connection.extra.get("organization"))
    return AzureOpenAIConnection(name=connection.name, api_key=connection.api_key or "none",
                                 api_base=endpoint, api_version=connection.api_version,
                                 auth_mode=connection.extra.get("auth_mode", "key"))


def _comparable(entity: Any) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in entity._to_dict().items()
            if k not in {"created_date", "last_modified_date", "expiry_time"}}
    data["__secret__"] = dict(getattr(entity, "secrets", {}) or {})
    return data


def upsert_connections(connections: Sequence[ConnectionSettings], endpoints: dict[str, str]) -> list[dict[str, Any]]:
    """`connections` are the config's (name, type, api_key, api_version, extra, public()).
    Returns one secret-free record per connection with action created|updated|unchanged."""
    prepare_promptflow()
    from promptflow.client import PFClient  # pyright: ignore[reportMissingTypeStubs]

    client: Any = cast(Any, PFClient)()
    records: list[dict[str, Any]] = []
    for connection in connections:
        wanted = _entity(connection, endpoints[connection.name])
        try:
            current: Any = client.connections.get(connection.name, with_secrets=True)
        except Exception:  # promptflow raises its own not-found types; any failure means "recreate"
            current = None
        if current is not None and _comparable(current) == _comparable(wanted):
            action = "unchanged"
        else:
            try:
                client.connections.create_or_update(wanted)
            except Exception as exc:
                raise GenaiopsError(
                    f"could not save connection {connection.name!r} in the promptflow store: "
                    f"{type(exc).__name__}",
                    hint="check that keyrings.alt is installed and HOME is writable") from None
            action = "created" if current is None else "updated"
        records.append({
            **connection.public(),
            "endpoint": endpoints[connection.name],
            "simulator": connection.uses_simulator,
            "action": action,
        })
    return records
