"""The environment an engine process starts with: an allow-list, never the orchestrator's whole.

Engine processes run flow code, and flow code can return anything it can read. The orchestrator's
environment holds the audit key (`GENAIOPS_AUDIT_KEY`, which signs approvals), cloud credentials
and whatever else the user exported; a flow that returned one would put it in the ledger and the
reports. So an engine process gets only what running a flow needs: the system's basics (PATH,
locale, temp folder, proxies and CA bundles), the engines' own settings (`PF_*`, `PROMPTFLOW_*`,
`GENAIOPS_*` tuning), and, per job, the variables the config declares or the flow names by literal
name (`run_inputs.passed_variables`). Never the audit key or the trust folder's location, and no
secret-looking `GENAIOPS_*` variable.
"""

from __future__ import annotations

import os

from genaiops.secrets import is_secret_name

AUDIT_KEY_ENV = "GENAIOPS_AUDIT_KEY"
# never in an engine process, whatever a flow names or a config declares
WITHHELD = frozenset({AUDIT_KEY_ENV, "GENAIOPS_TRUST_DIR"})

_NAMES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "USER", "LOGNAME", "SHELL", "TERM",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING",
    "VIRTUAL_ENV", "PYTHON_KEYRING_BACKEND",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "all_proxy",
})
_PREFIXES = ("LC_", "PF_", "PROMPTFLOW_", "APPLICATIONINSIGHTS_", "GENAIOPS_")


def allowed(name: str) -> bool:
    """Whether the orchestrator's variable `name` reaches engine processes by default."""
    if name in WITHHELD:
        return False
    if name in _NAMES:
        return True
    return name.startswith(_PREFIXES) and not is_secret_name(name)


def engine_environment(extra: dict | None = None, environ: dict | None = None) -> dict:
    """The allow-listed part of `environ` (default: this process's), plus `extra` (which may
    not bring back a withheld variable)."""
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if allowed(name)}
    env.update({k: str(v) for k, v in (extra or {}).items() if k not in WITHHELD})
    return env


def passed_values(names, environ: dict | None = None) -> dict:
    """The values of `names` (a job's `passed_variables`) that are set here, withheld ones never;
    secret-looking ones are added to the redactor (a flow may echo what it reads)."""
    from genaiops.secrets import REDACTOR

    environ = os.environ if environ is None else environ
    values = {name: environ[name] for name in names if name in environ and name not in WITHHELD}
    REDACTOR.add_env(values)
    return values
