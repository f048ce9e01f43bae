"""The state folder of one flow repository (`.genaiops/`, or `$GENAIOPS_STATE_DIR`).

`Workspace` is the only place that builds a state path: the run ledger, evaluation records and
the best-variant pointer, reports, the embedded registry, approvals, the audit and deployment
logs, keys, staging folders and deploy work folders. Modules ask it for a path (or a store
bound to it) instead of joining folder names themselves, so the layout is written down once:

    ledger/runs/<key>.json, <key>.outputs.jsonl    experiment runs (`workspace.ledger`)
    ledger/experiments/<id>.json, latest-<uc>      experiments
    evaluations/runs/<key>.json                    evaluation runs (`evaluation.store`)
    pointers/best-<uc>.json                        what `run deploy --variant best` promotes
    reports/<uc>/<evaluation id>/                  report folders
    comparisons/<candidate uc>/<comparison id>/    `genaiops compare` reports
    resolved/<uc>/<env>.json                       the resolved config `run init` saw
    registry/                                      the embedded registry (catalogue + blobs)
    approvals/<uc>-<env>.jsonl                     decisions, chained
    audit/audit.jsonl, deployments/<uc>-<env>.jsonl
    keys/audit.key                                 HMAC key of the chained logs
    staging/<name>/                                throw-away copies of flows for one run
    deploy/<uc>/                                   image build contexts, manifests
    deploy/wheels/                                 wheel cache (or $GENAIOPS_WHEEL_CACHE)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_NAME = ".genaiops"


@dataclass(frozen=True)
class Workspace:
    repo_root: Path
    root: Path  # the state folder

    @classmethod
    def for_repo(cls, repo_root: Path) -> Workspace:
        """The repository's workspace: `$GENAIOPS_STATE_DIR`, else `<repo>/.genaiops`."""
        env = os.environ.get("GENAIOPS_STATE_DIR")
        root = Path(env).expanduser().resolve() if env else Path(repo_root).resolve() / STATE_DIR_NAME
        return cls(Path(repo_root).resolve(), root)

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- experiments and evaluations ----------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self._dir("ledger", "runs")

    @property
    def experiments_dir(self) -> Path:
        return self._dir("ledger", "experiments")

    @property
    def evaluation_runs_dir(self) -> Path:
        return self._dir("evaluations", "runs")

    def best_pointer(self, use_case: str) -> Path:
        return self._dir("pointers") / f"best-{use_case}.json"

    def report_dir(self, use_case: str, evaluation_id: str) -> Path:
        return self.root / "reports" / use_case / evaluation_id

    def comparison_dir(self, use_case: str, comparison_id: str) -> Path:
        return self.root / "comparisons" / use_case / comparison_id

    def resolved_config(self, use_case: str, env: str | None) -> Path:
        return self._dir("resolved", use_case) / f"{env or 'default'}.json"

    # -- registry, approvals, audit ----------------------------------------------------------
    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    def approvals_log(self, use_case: str, env: str) -> Path:
        return self._dir("approvals") / f"{use_case}-{env}.jsonl"

    @property
    def audit_log(self) -> Path:
        return self._dir("audit") / "audit.jsonl"

    def deployments_log(self, use_case: str, env: str) -> Path:
        return self._dir("deployments") / f"{use_case}-{env}.jsonl"

    @property
    def audit_key_file(self) -> Path:
        return self.root / "keys" / "audit.key"

    # -- scratch space ------------------------------------------------------------------------
    def staging(self, name: str) -> Path:
        """A folder for throw-away copies of flows (promptflow writes into flow folders)."""
        return self._dir("staging") / name

    def deploy_dir(self, use_case: str) -> Path:
        return self._dir("deploy", use_case)

    @property
    def wheel_cache(self) -> Path:
        env = os.environ.get("GENAIOPS_WHEEL_CACHE")
        return Path(env) if env else self.root / "deploy" / "wheels"

    # -- the run ledger ------------------------------------------------------------------------
    def ledger(self):
        from genaiops.workspace.ledger import Ledger

        return Ledger(self)


__all__ = ["STATE_DIR_NAME", "Workspace"]
