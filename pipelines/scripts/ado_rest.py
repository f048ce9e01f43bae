"""The Azure DevOps REST calls the pipeline scripts make, with the run's own identity.

Standard library only: the scripts run before `make setup` too. The token is System.AccessToken,
mapped into the step's env as SYSTEM_ACCESSTOKEN; the organisation and project come from the
agent's predefined variables.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

API_VERSION = "7.1"


class AdoError(Exception):
    pass


def ado_get(path: str, **params) -> dict:
    """GET {collection}{project}/_apis/{path}?{params}&api-version=7.1 as JSON."""
    missing = [n for n in ("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "SYSTEM_ACCESSTOKEN") if not os.environ.get(n)]
    if missing:
        raise AdoError(f"{', '.join(missing)} not set (map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into env)")
    base = os.environ["SYSTEM_COLLECTIONURI"].rstrip("/") + "/" + urllib.parse.quote(os.environ["SYSTEM_TEAMPROJECT"])
    query = urllib.parse.urlencode({**params, "api-version": API_VERSION})
    request = urllib.request.Request(f"{base}/_apis/{path}?{query}", headers={
        "Authorization": f"Bearer {os.environ['SYSTEM_ACCESSTOKEN']}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AdoError(f"Azure DevOps answered HTTP {exc.code} for {path}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AdoError(f"cannot read {path} from Azure DevOps: {exc}") from None


def set_variable(name: str, value: str, *, output: bool = False) -> None:
    """A pipeline variable for later steps (and jobs, when `output`); values are single-line."""
    value = value.replace("\r", " ").replace("\n", " ").replace("##", "#")
    flag = ";isOutput=true" if output else ""
    print(f"##vso[task.setvariable variable={name}{flag}]{value}")


def log_issue(kind: str, message: str) -> None:
    print(f"##vso[task.logissue type={kind}]{message}", file=sys.stderr if kind == "error" else sys.stdout)
