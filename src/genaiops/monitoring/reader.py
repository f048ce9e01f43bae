"""Where `monitor` reads a deployment's spans from, behind one small protocol.

- `TraceStore` (the embedded store, `monitoring.store`) for local deployments;
- `AppInsightsReader` for production: KQL over the Log Analytics workspace behind Application
  Insights (`AppRequests` / `AppDependencies`, whose `Properties` are the spans' customDimensions),
  through `azure-monitor-query` (the `azure` extra). The serving images put the genaiops resource
  attributes on the root span as attributes too, since Azure Monitor does not keep resource
  attributes in customDimensions.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from genaiops.errors import GenaiopsError, UsageError
from genaiops.monitoring.store import (
    RES_ENVIRONMENT,
    RES_IMAGE,
    RES_USE_CASE,
    STATUS_ERROR,
    Span,
    TraceStore,
)


class TraceReader(Protocol):
    def spans(self, *, use_case: str | None = None, environment: str | None = None,
              image: str | None = None, since_ns: int = 0) -> list[Span]: ...


def _kql_string(value: str) -> str:
    return json.dumps(str(value))  # a KQL double-quoted string literal (JSON escaping is valid KQL)


def kql(use_case: str | None, environment: str | None, image: str | None) -> str:
    """The query: both span tables, filtered on the genaiops dimensions, oldest first."""
    lines = ["union AppRequests, AppDependencies"]
    for key, value in ((RES_USE_CASE, use_case), (RES_ENVIRONMENT, environment), (RES_IMAGE, image)):
        if value is not None:
            lines.append(f"| where tostring(Properties[{_kql_string(key)}]) == {_kql_string(value)}")
    lines.append("| project TimeGenerated, OperationId, Id, ParentId, Name, DurationMs, Success, "
                 "ResultCode, Properties, Type")
    lines.append("| order by TimeGenerated asc")
    return "\n".join(lines)


def _dimensions(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def _trace_id(op_id: str) -> str:
    return (op_id or "").lower().rjust(32, "0")[-32:]


class AppInsightsReader:
    """Spans of a deployment from Application Insights (a workspace-based resource)."""

    def __init__(self, workspace_id: str, *, credential=None, endpoint: str | None = None, **client_kwargs):
        try:
            from azure.monitor.query import LogsQueryClient
        except ImportError:
            raise UsageError("reading traces from Application Insights needs azure-monitor-query",
                             hint="pip install 'genaiops[azure]'") from None
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        if endpoint:
            client_kwargs["endpoint"] = endpoint
        self.workspace_id = workspace_id
        self.client = LogsQueryClient(credential, **client_kwargs)

    def spans(self, *, use_case: str | None = None, environment: str | None = None,
              image: str | None = None, since_ns: int = 0, **query_kwargs) -> list[Span]:
        from azure.core.exceptions import AzureError
        from azure.monitor.query import LogsQueryStatus

        start = datetime.fromtimestamp(since_ns / 1e9, tz=timezone.utc)
        end = datetime.now(timezone.utc) + timedelta(minutes=5)
        try:
            result = self.client.query_workspace(self.workspace_id, kql(use_case, environment, image),
                                                 timespan=(start, end), **query_kwargs)
        except AzureError as exc:
            raise GenaiopsError(f"Application Insights query failed: {str(exc).splitlines()[0][:300]}",
                                hint="check the workspace id and that your identity may read its logs") from None
        if result.status != LogsQueryStatus.SUCCESS:
            raise GenaiopsError("Application Insights returned a partial result; narrow --since and retry")
        spans = []
        for table in result.tables:
            columns = list(table.columns)
            for row in table.rows:
                rec = dict(zip(columns, list(row)))
                when = rec["TimeGenerated"]
                if isinstance(when, str):
                    when = datetime.fromisoformat(when.replace("Z", "+00:00"))
                start_ns = int(when.timestamp() * 1e9)
                dims = _dimensions(rec.get("Properties"))
                resource = {k: dims[k] for k in (RES_USE_CASE, RES_ENVIRONMENT, RES_IMAGE) if k in dims}
                ok = rec.get("Success")
                ok = ok if isinstance(ok, bool) else str(ok).lower() == "true"
                spans.append(Span(
                    trace_id=_trace_id(rec.get("OperationId", "")), span_id=str(rec.get("Id", "")),
                    parent_span_id="" if rec.get("ParentId") in (None, rec.get("OperationId")) else str(rec["ParentId"]),
                    name=str(rec.get("Name", "")), start_ns=start_ns,
                    end_ns=start_ns + int(float(rec.get("DurationMs") or 0) * 1e6),
                    status_code=0 if ok else STATUS_ERROR, attributes=dims, resource=resource))
        return spans


def open_reader(workspace, *, app_insights_workspace: str | None = None) -> TraceReader:
    """The embedded store, unless an Application Insights (Log Analytics) workspace id is given."""
    if app_insights_workspace:
        return AppInsightsReader(app_insights_workspace)
    db: Path = workspace.traces_db
    return TraceStore(db)
