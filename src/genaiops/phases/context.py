"""What every phase works with: one use case's config, its project (repository, workspace,
registries), its engine and its LLM.

A phase is a function from a `PhaseContext` (plus its options) to a typed result with
`to_json()`; the CLI builds the context once per command (from the command's one `Project`) and
renders the result.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from genaiops.config.model import ExperimentConfig
from genaiops.engines.base import Engine, FlowSpec
from genaiops.project import Project
from genaiops.workspace import Workspace

if TYPE_CHECKING:
    from genaiops.gateway import LLMGateway
    from genaiops.gateway.cassette import Cassette
    from genaiops.simulator import SimulatorServer


@dataclass
class PhaseContext:
    config: ExperimentConfig
    project: Project
    engine: Engine
    simulator: SimulatorServer | None = None  # a running simulator to use instead of starting one
    show_progress: bool = True
    _others: dict = field(default_factory=dict, repr=False)  # engines of evaluation flows
    # the command's LLM gateway, started by the first phase that needs it
    _gateway: LLMGateway | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, project: Project, use_case: str, env: str | None = None, *, simulator=None,
             runner=None, show_progress: bool = True, llm: str | None = None) -> PhaseContext:
        config = project.load_experiment(use_case, env, llm)
        return cls.for_config(config, project=project, simulator=simulator,
                              runner=runner, show_progress=show_progress)

    @classmethod
    def for_config(cls, config: ExperimentConfig, *, project: Project | None = None, simulator=None,
                   runner=None, show_progress: bool = True) -> PhaseContext:
        """The context of `config`, in the command's `project` (library callers and tests may
        leave it out: the project at the config's repository)."""
        from genaiops.config.envvars import load_dotenv_values
        from genaiops.deploy.audit import redact_key
        from genaiops.execution.procs import sweep_machine
        from genaiops.secrets import REDACTOR

        project = project or Project.at(config.repo_root)
        REDACTOR.add(*config.secrets())
        REDACTOR.add_env(load_dotenv_values(config.repo_root))  # .env secrets a flow never named
        redact_key(project.workspace)  # flow code can read it: it never reaches what we store
        project.workspace.sweep_abandoned()  # what a killed run left behind
        sweep_machine()  # its processes and temp folders
        return cls(config, project, project.engine(config, runner), simulator, show_progress)

    @property
    def workspace(self) -> Workspace:
        """The project's state folder."""
        return self.project.workspace

    @cached_property
    def flow(self) -> FlowSpec:
        """The standard flow as the engine reads it; its links may point inside the repository."""
        return replace(self.engine.read_flow(self.config.flow), boundary=self.config.repo_root)

    @cached_property
    def flow_reads(self):
        """What the standard flow reads from outside its files (run keys; what its runs are given)."""
        return self.engine.flow_reads(self.flow)

    @cached_property
    def deployment(self):
        """The use case's deployment config (`deployment.yaml` + its overlay for this env)."""
        from genaiops.config.deployment import load_deployment

        return load_deployment(self.config.repo_root, self.config.use_case, self.config.env)

    def engine_named(self, name: str) -> Engine:
        """The use case's engine, or another one (an evaluation flow of another engine), opened
        once and closed with the context."""
        if name == self.engine.name:
            return self.engine
        if name not in self._others:
            from genaiops.engines import open_engine

            self._others[name] = open_engine(name)
        return self._others[name]

    def engines_in_use(self) -> list[Engine]:
        """The use case's engine first, then those its evaluation flows run on."""
        names = dict.fromkeys([self.engine.name] + [e.engine for e in self.config.evaluators
                                                    if e.engine])
        return [self.engine_named(name) for name in names]

    def llm(self, engines: list[Engine] | None = None, pool: str = "flow",
            fail_on_miss: bool = True) -> contextlib.AbstractContextManager:
        """The LLM endpoint for the phase's runs (starts the simulator when the config says so),
        with the connections prepared in `engines` (default: the use case's engine), behind the
        command's LLM gateway as `pool` (`flow`: the flow under test; `evaluators`: LLM-judge
        evaluation flows). Phases of one command share the gateway and what it learnt."""
        from genaiops.gateway.llm_session import (
            gateway_enabled,
            llm_session,
            open_cassette,
            open_gateway,
        )

        if self._gateway is None and (gateway_enabled(self.config) or self.config.llm.mode != "live"):
            cassette = open_cassette(self.config)  # before the gateway: it may refuse the mode
            self._gateway = open_gateway(self.config)
            self._gateway.use_cassette(cassette)
        return llm_session(self.config, engines or [self.engine], self.simulator,
                           gateway=self._gateway, pool=pool, fail_on_miss=fail_on_miss)

    @property
    def cassette(self) -> Cassette | None:
        """The cassette the command records into or replays from, or None (live)."""
        return None if self._gateway is None else self._gateway.cassette

    @property
    def gateway(self) -> LLMGateway | None:
        """The running LLM gateway (its counters), or None."""
        return self._gateway

    def close(self) -> None:
        self.engine.close()
        for engine in self._others.values():
            engine.close()
        if self._gateway is not None:
            self._gateway.stop()
            cassette = self._gateway.cassette
            self._gateway = None
            if cassette is not None and cassette.mode == "record":
                cassette.save()  # what this command's calls answered, for replay

    def __enter__(self) -> PhaseContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
