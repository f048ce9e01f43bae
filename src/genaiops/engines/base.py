"""The engine protocol: the one boundary between genaiops and a flow engine's internals.

promptflow gets no new features since 2026-04-20 and becomes read-only on 2027-04-20, so nothing
outside `genaiops/engines/<engine>/` may know how an engine reads flows, stages variants, runs a
batch, stores its runs or builds a serving image. Phases, gates, reports and approvals speak
only these types; a second engine is a second adapter, not a change to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast


def json_object(value: object) -> dict[str, Any] | None:
    """A parsed JSON or YAML value when it is an object (a mapping), else None: the typed form of
    `isinstance(value, dict)` for data read from files and pipes."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


class FlowSpecError(ValueError):
    """A folder or file is not a flow the engine understands; the message says why."""


@dataclass(frozen=True)
class FlowSpec:
    """What a flow is, read from its files without running it."""

    kind: str  # dag | flex | prompty (promptflow), or another engine's kind
    root: Path  # folder holding the flow
    entry: Path  # what the engine is pointed at (a folder, or a file such as a .prompty)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    # node name -> (default variant id, (variant ids...)): per-node variants, where the engine has them
    node_variants: dict[str, tuple[Any, ...]] = field(default_factory=dict[str, tuple[Any, ...]])
    # where the flow's symbolic links may point (the repository); None: inside `root` only
    boundary: Path | None = None
    engine: str = field(kw_only=True)  # the engine that read it (and runs it); no default
    calls_llm: bool | None = None  # whether lines call an LLM (None: cannot tell; sizes worker pools)
    # inputs with a default value: left unmapped, every line takes the default (not a column)
    defaulted: tuple[str, ...] = ()
    # what the config may set for this flow (declared by the engine that read it):
    parameter_sets: bool = True  # `variants:` (named parameter sets) apply to it
    takes_init: bool = False  # an evaluator's `init:` (constructor parameters) applies to it


@dataclass
class FlowReads:
    """What a flow reads from outside its files, found without running it: run keys cover these,
    and a run whose reads cannot be known is not reused."""

    variables: dict[str, str] = field(default_factory=dict[str, str])  # env variable -> where ("file:line")
    connections: dict[str, str] = field(default_factory=dict[str, str])  # connection name -> where used
    unknown: list[str] = field(default_factory=list[str])  # reads no name can be given for, located


@dataclass(frozen=True)
class VariantSpec:
    """One variant run: node assignments (per-node variants) or parameters (named parameter sets)."""

    label: str
    nodes: dict[str, str] = field(default_factory=dict[str, str])  # node -> variant id (a full assignment)
    init: dict[str, Any] = field(default_factory=dict[str, Any])  # parameters

    def identity(self) -> dict[str, Any]:
        """What makes two variant runs the same (part of the run key)."""
        return {"nodes": dict(sorted(self.nodes.items())), "init": self.init}


@dataclass(frozen=True)
class StagedBatch:
    """A flow staged to compute one or more variants in a single batch run."""

    entry: str  # absolute path the engine runs
    member_suffixes: list[str]  # member i reads outputs named `<output><suffix>`; [""] for one variant
    init: dict[str, Any] | None = None  # parameters for a class entry
    environment: dict[str, str] = field(default_factory=dict[str, str])  # engine settings for this batch (never secrets)


START_ALLOWANCE_SEC = 60


@dataclass
class BatchJob:
    """One batch run over one dataset. A staged flow may compute several variants ("members")
    per line; member `i` reads outputs named `<output><suffix>`."""

    name: str  # run name, unique
    flow: str  # absolute path of the (staged) flow
    data: str  # absolute path of the dataset
    column_mapping: dict[str, Any]
    member_suffixes: list[str]  # "" for a plain (single-variant) run
    init: dict[str, Any] | None = None  # flex/prompty init parameters
    worker_count: int = 4
    line_timeout_sec: int = 120
    batch_timeout_sec: int | None = None  # the whole run (None: `deadline_sec` derives one)
    environment: dict[str, str] = field(default_factory=dict[str, str])  # extra env for the run (never secrets)
    run: str | None = None  # an existing run to evaluate (`${run.outputs.x}` mappings)
    # the config's `environment_variables`, handed to the engine as they are written (promptflow
    # resolves `${<connection>.<key>}` references inside the run, so no secret passes through here)
    environment_variables: dict[str, Any] = field(default_factory=dict[str, Any])
    # names of the orchestrator's variables the flow reads by literal name: engine processes get
    # an allow-listed environment (`engines.processenv`), so these are passed by value at run time
    # (over a pipe, never through the job file: one may hold a secret)
    passed_variables: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def deadline_sec(self) -> float:
        """How long the run may take before the runner stops it, whatever its flow does: the
        configured batch timeout, else every line using its whole line timeout, `worker_count` at
        a time, plus one line's worth and `START_ALLOWANCE_SEC` for starting up."""
        if self.batch_timeout_sec:
            return float(self.batch_timeout_sec)
        try:
            with open(self.data, encoding="utf-8") as handle:
                lines = sum(1 for line in handle if line.strip())
        except OSError:
            lines = 1
        rounds = -(-max(1, lines) // max(1, self.worker_count))
        return float(self.line_timeout_sec * (rounds + 1) + START_ALLOWANCE_SEC)


@dataclass
class LineResult:
    line: int
    ok: bool
    inputs: dict[str, Any]  # the dataset row it ran on, every column (a key_column join reads them)
    outputs: dict[str, Any] | None
    error: str | None = None
    latency_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    node: str | None = None  # the node (flow node, workflow executor, agent) whose failure failed the line


@dataclass
class MemberResult:
    suffix: str
    lines: list[LineResult]


@dataclass
class BatchResult:
    name: str
    status: str  # completed | failed
    duration_s: float
    members: list[MemberResult]
    error: str | None = None  # why the whole run failed
    metrics: dict[str, Any] = field(default_factory=dict[str, Any])  # aggregated metrics the flow logged (evaluation runs)
    crashed: bool = False  # a process running it died (killed, out of memory): failed, never retried


ProgressCallback = Callable[[int], None]  # lines finished so far


class Runner(Protocol):
    """Where an engine executes a batch: this machine, or a cloud service."""

    def run(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult: ...


class OwnsRunner:
    """What every engine adapter does with its runner: made on first use (`make_runner`) unless one
    was given (tests give one at the wire), every batch handed to it. `close()` lets go of a runner
    it made, so a later batch of the same command gets a new one."""

    def __init__(self, backend: str = "local", settings: dict[str, Any] | None = None,
                 runner: Runner | None = None):
        self.backend = backend
        self.settings = dict(settings or {})
        self._runner = runner
        self._owns_runner = runner is None

    def make_runner(self) -> Runner:
        """The engine's runner for `self.backend` and `self.settings`."""
        raise NotImplementedError

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = self.make_runner()
        return self._runner

    def run_batch(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult:
        return self.runner.run(job, progress)


@dataclass(frozen=True)
class ServingBundle:
    """A build context an engine prepared for a serving image (`/score`, `/health` on `port`)."""

    requirements: list[str]  # pip requirement lines, installed offline from host-built wheels
    env: dict[str, str]  # image environment variables (never secrets)
    command: list[str]  # the container's CMD
    port: int = 8080
    flow_dir: str = "/flow"  # where the image holds the flow (checked against its hash after a build)
    generated: tuple[str, ...] = ()  # glob patterns of files the build adds under flow_dir


class RetrySettings(Protocol):
    """`runtime.retries` as an engine reads it (`config.model.Retries` is one)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_sec(self) -> float: ...
    @property
    def max_total_sec(self) -> float: ...


class ConnectionSettings(Protocol):
    """What an engine reads of a config connection (`config.model.Connection` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...  # "open_ai" | "azure_open_ai"
    @property
    def api_key(self) -> str: ...  # a secret
    @property
    def api_version(self) -> str: ...
    @property
    def extra(self) -> dict[str, Any]: ...  # optional settings beyond the core ones
    @property
    def uses_simulator(self) -> bool: ...

    def public(self) -> dict[str, Any]: ...  # everything but secrets


@dataclass(frozen=True)
class ServingConnections:
    """How a serving container receives the connections: environment variables (some secret, set
    at container start, never baked in) and secret-free descriptions for building the image."""

    env: dict[str, str]  # name -> value, secrets included: never logged or recorded
    secret_names: tuple[str, ...]
    descriptions: list[dict[str, Any]]  # [{name, type, endpoint, api_version}] for `serving_bundle`


@dataclass(frozen=True)
class ScaffoldKind:
    """A kind of use case `genaiops new --kind` writes for an engine: template folders stacked
    over the scaffold's common layer (configs, dataset, simulator rules), in order."""

    layers: tuple[Path, ...]
    flow_path: str  # the standard flow as the config names it ("flows/{name}/standard")
    output: str  # the flow output the evaluator scores
    evaluation_path: str = "flows/{name}/evaluation"  # the evaluation flow as the config names it


class Engine(Protocol):
    """Everything genaiops needs from a flow engine. An adapter declares it implements this
    (`class MyEngine(Engine)`); `engines.ENGINE_TABLE` (or `GENAIOPS_ENGINES`) names it."""

    name: str
    cache_patterns: tuple[str, ...]  # gitignore patterns the engine writes into flow folders
    flow_hint: str  # how to point a config at a flow this engine can read
    backends: tuple[str, ...]  # where it can run batches (`runtime.backend`): "local", "azure", ...
    # whether its local line workers are processes of this machine (held to its cores and memory:
    # `capacity.worker_problem`), rather than coroutines of one process
    line_workers_are_processes: bool
    needs_setup: bool  # whether `genaiops engine setup <name>` makes an environment of its own

    def scaffold_kinds(self) -> dict[str, ScaffoldKind]:
        """The kinds of use case `genaiops new --kind` can write for this engine."""
        ...

    def registration_properties(self, flow_dir: Path) -> dict[str, str]:
        """Properties a model registry records with a registered flow (e.g. how Azure ML
        recognises it); {} when none."""
        ...

    def version(self) -> str:
        """Engine and tool versions that can change outputs (part of every run key)."""
        ...

    def environment(self) -> dict[str, Any]:
        """Where the engine runs and whether it is ready: {engine, python, ready, versions,
        problem?} (`genaiops engine list`)."""
        ...

    def setup(self, *, force: bool = False,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Make the engine's environment ready (idempotent); `environment()` plus `action`."""
        ...

    def read_flow(self, path: Path) -> FlowSpec:
        """The flow at `path` (FlowSpecError when it is not one)."""
        ...

    def flow_reads(self, flow: FlowSpec) -> FlowReads:
        """Environment variables and connections the flow's files read (part of every run key)."""
        ...

    def max_variants_per_batch(self, flow: FlowSpec) -> int:
        """How many variants `stage` can put in one batch run."""
        ...

    def stage(self, flow: FlowSpec, variants: Sequence[VariantSpec], dest: Path) -> StagedBatch:
        """A private copy of the flow at `dest` computing `variants` (at most max_variants_per_batch)."""
        ...

    def stage_for_serving(self, flow: FlowSpec, variant: VariantSpec, dest: Path) -> Path:
        """A private copy of the flow at `dest` whose defaults are `variant` (what an image serves)."""
        ...

    def prepare_connections(self, connections: Sequence[ConnectionSettings],
                            endpoints: dict[str, str]) -> list[dict[str, Any]]:
        """Make the config's connections usable by runs; `endpoints` maps names to URLs.
        Returns one secret-free record per connection with `action` created|updated|unchanged."""
        ...

    def run_environment(self, retries: RetrySettings) -> dict[str, str]:
        """Environment for batch runs that applies genaiops' LLM retry policy inside the engine."""
        ...

    # The three checks below have defaults an adapter inherits by subclassing `Engine`: an engine
    # that checks nothing more answers "nothing to say".
    def check_requirements(self, flow: FlowSpec) -> Any:
        """The flow's requirements.txt against the environment that runs it
        (`engines.requirements.RequirementsCheck`); None without one, or where it cannot be
        known from here (a cloud backend)."""
        return None

    def ignored_parameters(self, flow: FlowSpec, init: dict[str, Any]) -> list[tuple[str, str]]:
        """The keys of a variant's `init` that the engine would silently ignore for `flow`, as
        (dotted key, what to write instead): validate refuses them."""
        return []

    def reserved_variables(self) -> dict[str, str]:
        """Environment variables the engine sets for its runs itself, each with what to change
        instead (a config field): `environment_variables:` may not set them (validate refuses)."""
        return {}

    def prewarm(self, count: int) -> None:
        """Start `count` workers ahead of use (optional speed-up; may do nothing)."""
        ...

    def run_batch(self, job: BatchJob, progress: ProgressCallback | None = None) -> BatchResult: ...

    def linkable_run(self, name: str | None) -> bool:
        """Whether a finished run can still be referenced by a later batch (`BatchJob.run`)."""
        ...

    def serving_connections(self, connections: Sequence[ConnectionSettings], endpoints: dict[str, str],
                            default_endpoints: dict[str, str]) -> ServingConnections:
        """Container environment for `connections` at `endpoints`; `default_endpoints` are the
        secret-free values baked into the image (overridden at start)."""
        ...

    def serving_bundle(self, flow_dir: Path, context: Path,
                       connections: list[dict[str, Any]]) -> ServingBundle:
        """Write the flow and whatever serving needs into `context`; `connections` are secret-free."""
        ...

    def close(self) -> None: ...
