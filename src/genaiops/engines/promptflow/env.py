"""Make promptflow quiet and offline before it is imported.

promptflow phones home (telemetry), starts a detached trace service on port 23333 that
outlives us, and needs a keyring for connection secrets. We switch the first two off and
pick a file keyring on headless machines, without overriding anything the user set.

Its home (connection store, run folders, keyring) is the command's own: promptflow keeps
connections by name in one store per HOME, so two commands naming the same connection (or the
user's own promptflow work) would overwrite each other's endpoints and keys - one command's runs
then get another's answers. Every command therefore gives its engine processes a private HOME
(`command_home()`: a 0700 temp folder removed when the command ends; `pf flow build` needs the
store under `$HOME`, so HOME is moved, not `PF_HOME_DIRECTORY`). The user's `~/.promptflow` is
never read or written.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import yaml

from genaiops.engines.base import json_object
from genaiops.engines.processenv import HOME_ENV, KEEP_ENV, command_home, home_environment

__all__ = ["HOME_ENV", "KEEP_ENV", "command_home", "engine_home_environment", "prepare_promptflow",
           "promptflow_home"]

_QUIET_ENV = {
    "PF_TRACING_SKIP_LOCAL_SETUP": "true",
    "PF_DISABLE_TELEMETRY": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    "PF_LOGGING_LEVEL": "WARNING",
}

_QUIET_CONFIG = {"telemetry": {"enabled": False}, "trace": {"destination": "none"},
                 "cli": {"installation_id": lambda: str(uuid.uuid4())}}


def promptflow_home() -> Path:
    return command_home() / ".promptflow"


def engine_home_environment() -> dict[str, Any]:
    """What points a promptflow process at the command's private state."""
    return home_environment()


def prepare_promptflow() -> None:
    """Idempotent; call before the first promptflow import in any process we start, and in the
    orchestrator before starting workers: promptflow writes `cli.installation_id` into pf.yaml
    on first use, not atomically, so workers starting together in a new HOME would race on the
    file (one reads it half-written); we write it once, atomically, first."""
    from genaiops.engines.promptflow.rundirs import make_private
    from genaiops.workspace.files import atomic_write_text

    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    make_private(promptflow_home())  # run folders, the connection store: this user's only
    make_private(promptflow_home() / ".runs")
    config_path = promptflow_home() / "pf.yaml"
    try:
        loaded: object = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return  # leave a file we cannot read to the user; env vars above still apply
    current = json_object(loaded) or {}
    changed = False
    for section, values in _QUIET_CONFIG.items():
        block = json_object(current.setdefault(section, {}))
        if block is None:
            continue
        for key, value in values.items():
            if key not in block:
                block[key] = value() if callable(value) else value
                changed = True
    if changed:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, yaml.safe_dump(current, sort_keys=True))
