"""The state folder of one flow repository (`.genaiops/`, or `$GENAIOPS_STATE_DIR`).

`Workspace` is the only place that builds a state path: the run ledger, evaluation records and
the best-variant pointer, reports, the embedded registry, approvals, the audit and deployment
logs, keys, staging folders and deploy work folders. Modules ask it for a path (or a store
bound to it) instead of joining folder names themselves, so the layout is written down once:

    ledger/runs/<key>.json, <key>.outputs.jsonl    experiment runs (`workspace.ledger`)
    ledger/experiments/<id>.json, latest-<uc>.json experiments
    evaluations/runs/<key>.json                    evaluation runs (`evaluation.store`)
    evaluations/summaries/<digest>.json            every summary `run evaluate` wrote, by digest:
                                                   what `run build` and `approve` verify against
    pointers/best-<uc>.json                        what `run deploy --variant best` promotes
    reports/<uc>/<evaluation id>/                  report folders
    comparisons/<candidate uc>/<comparison id>/    `genaiops compare` reports
    monitor/<uc>/<env>/<time>/                     `genaiops monitor` reports
    feedback/<uc>/<env>/candidates.jsonl           `feedback promote`: rows to review before --apply
    resolved/<uc>/<env>.json                       the resolved config `run init` saw
    registry/                                      the embedded registry (catalogue + blobs)
    audit/audit.jsonl                              the audit chain: approvals, rejections,
                                                   refusals, deployments (HMAC-chained)
    staging/<name>/                                throw-away copies of flows for one run
    quarantine/<time>-<id>/                        damaged state, moved aside when read (never read again)
    deploy/<uc>/                                   image build contexts, manifests
    deploy/wheels/                                 wheel cache (or $GENAIOPS_WHEEL_CACHE)
    traces/spans.sqlite                            the embedded trace store: spans the deployed
                                                   images exported, evaluation events (`monitoring`)

Asking for a path never creates a file or folder (reading `runs_dir` in a fresh clone leaves no
`.genaiops/` behind): the write sites create what they write.

What must not be editable by whoever can write the state folder lives in the *trust folder*
(`$GENAIOPS_TRUST_DIR`, else `$XDG_CONFIG_HOME/genaiops`, else `~/.config/genaiops`):

    audit.key                                      HMAC key of the chain (or $GENAIOPS_AUDIT_KEY)
    anchors/<state id>.json                        the chain's newest head (seq + mac)
    incidents/<state id>.jsonl                     refusals the chain itself could not take
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import overload

STATE_DIR_NAME = ".genaiops"


def trust_dir() -> Path:
    """The trust folder: `$GENAIOPS_TRUST_DIR`, else `$XDG_CONFIG_HOME/genaiops`, else
    `~/.config/genaiops` (the same for every state folder of this user)."""
    env = os.environ.get("GENAIOPS_TRUST_DIR")
    if env:
        return Path(env).expanduser().resolve()
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config_home).resolve() / "genaiops"


class _StateFolder:
    """A fixed folder of the state folder read as an attribute (`workspace.runs_dir`), so that
    those folders are declared as one list of names and parts."""

    def __init__(self, *parts: str):
        self.parts = parts

    @overload
    def __get__(self, workspace: None, owner: type | None = None) -> _StateFolder: ...
    @overload
    def __get__(self, workspace: Workspace, owner: type | None = None) -> Path: ...

    def __get__(self, workspace: Workspace | None, owner: type | None = None) -> Path | _StateFolder:
        return self if workspace is None else workspace._dir(*self.parts)  # the class's: the descriptor


@dataclass(frozen=True)
class Workspace:
    repo_root: Path
    root: Path  # the state folder

    @property
    def tag_namespace(self) -> str:
        """Eight hex digits naming this state folder in shared places (docker image tags)."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:8]

    @classmethod
    def for_repo(cls, repo_root: Path) -> Workspace:
        """The repository's workspace: `$GENAIOPS_STATE_DIR`, else `<repo>/.genaiops`. Commands get
        theirs from `genaiops.project.Project.workspace` (built once per command)."""
        env = os.environ.get("GENAIOPS_STATE_DIR")
        root = Path(env).expanduser().resolve() if env else Path(repo_root).resolve() / STATE_DIR_NAME
        return cls(Path(repo_root).resolve(), root)

    def _dir(self, *parts: str) -> Path:
        """A path in the state folder; naming it creates nothing (writers create what they write:
        `atomic_write_*` makes the parent folder, the others `mkdir` where they write)."""
        return self.root.joinpath(*parts)

    # -- experiments and evaluations ----------------------------------------------------------
    runs_dir = _StateFolder("ledger", "runs")
    experiments_dir = _StateFolder("ledger", "experiments")
    evaluation_runs_dir = _StateFolder("evaluations", "runs")
    evaluation_summaries_dir = _StateFolder("evaluations", "summaries")

    def best_pointer(self, use_case: str) -> Path:
        return self._dir("pointers") / f"best-{use_case}.json"

    def report_dir(self, use_case: str, evaluation_id: str) -> Path:
        return self.root / "reports" / use_case / evaluation_id

    def report_dirs(self, use_case: str) -> Path:
        """The folder holding every report folder of `use_case`."""
        return self.root / "reports" / use_case

    def comparison_dir(self, use_case: str, comparison_id: str) -> Path:
        return self.root / "comparisons" / use_case / comparison_id

    def monitor_dir(self, use_case: str, env: str, stamp: str) -> Path:
        return self.root / "monitor" / use_case / env / stamp

    def feedback_dir(self, use_case: str, env: str) -> Path:
        return self._dir("feedback", use_case, env)

    def resolved_config(self, use_case: str, env: str | None) -> Path:
        return self._dir("resolved", use_case) / f"{env or 'default'}.json"

    # -- registry, approvals, audit ----------------------------------------------------------
    registry_dir = _StateFolder("registry")

    @property
    def audit_log(self) -> Path:
        return self._dir("audit") / "audit.jsonl"

    @property
    def legacy_audit_key_file(self) -> Path:
        """Where older versions kept the key: inside the state folder, so never used now."""
        return self.root / "keys" / "audit.key"

    # -- the trust folder: outside the state folder and the repository ------------------------
    @property
    def trust_dir(self) -> Path:
        return trust_dir()

    @property
    def audit_key_file(self) -> Path:
        return self.trust_dir / "audit.key"

    @property
    def _state_id(self) -> str:
        return hashlib.sha256(str(self.root).encode("utf-8")).hexdigest()[:32]

    @property
    def audit_anchor_file(self) -> Path:
        return self.trust_dir / "anchors" / f"{self._state_id}.json"

    @property
    def audit_incidents_log(self) -> Path:
        return self.trust_dir / "incidents" / f"{self._state_id}.jsonl"

    # -- scratch space ------------------------------------------------------------------------
    def staging(self, name: str) -> Path:
        """A folder for throw-away copies of flows (promptflow writes into flow folders), named
        with its owner so a crashed run's copy is swept (`sweep_abandoned`)."""
        from genaiops.workspace.sweep import owner_tag

        return self._dir("staging") / f"{name}.{owner_tag()}"

    def sweep_abandoned(self) -> int:
        """Remove what interrupted writers left behind: staging copies and temp files of
        processes of this machine that are gone. Returns how many entries were removed."""
        from genaiops.workspace.sweep import sweep

        removed = sweep(self.root / "staging", "*")
        for folder in {path.parent for path in self.root.rglob(".*.tmp")}:
            removed += sweep(folder, ".*.tmp")
        removed += sweep(self.root / "registry" / "blobs" / "sha256", ".incoming-*")
        return len(removed)

    # where damaged state goes (`workspace.integrity.quarantine`): kept, never read again
    quarantine_dir = _StateFolder("quarantine")

    def deploy_dir(self, use_case: str) -> Path:
        return self._dir("deploy", use_case)

    @property
    def traces_db(self) -> Path:
        """The embedded trace store (`monitoring.store`): the default sink of deployed images."""
        return self._dir("traces") / "spans.sqlite"

    @property
    def wheel_cache(self) -> Path:
        env = os.environ.get("GENAIOPS_WHEEL_CACHE")
        return Path(env) if env else self.root / "deploy" / "wheels"

    # -- the run ledger ------------------------------------------------------------------------
    def ledger(self):
        from genaiops.workspace.ledger import Ledger

        return Ledger(self)


__all__ = ["STATE_DIR_NAME", "Workspace"]
