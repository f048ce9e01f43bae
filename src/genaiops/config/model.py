"""`experiment.yaml` as typed, frozen models: the one description of the format.

Fields are the file's keys (validated by the schema generated from these models); a value kept as
written is `*_rel` and its property twin is the absolute path (`source_rel` / `source`). Flow kind,
repo root, env and files read come from the `LoadContext` that `load_experiment` passes in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, WithJsonSchema, model_validator
from typing_extensions import TypedDict

from genaiops.config.filemodel import (
    ENV_NAME,
    ConfigFile,
    FileModel,
    NonEmpty,
    NonNegative,
    Number,
    Positive,
    PositiveInt,
    Probability,
    RelPath,
    Share,
    WindowSec,
    load_context,
)
from genaiops.engines import DEFAULT_ENGINE
from genaiops.simulator import DEFAULT_PORT

SIMULATOR_BASE = "simulator"  # `api_base: simulator` = the bundled loopback LLM simulator
SECRET_FIELDS = frozenset({"api_key"})
CORE_CONNECTION_FIELDS = frozenset({"name", "type", "api_base", "api_key", "api_version"})
QUOTA_FIELDS = frozenset({"rpm", "tpm"})  # how fast we may call, never what the flow outputs

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# an engine's name (`genaiops engine list`); semantics checks it names a registered one, which may
# come from an installed package or GENAIOPS_ENGINES
EngineName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvVarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
Scalar = Annotated[str | bool | int | float, WithJsonSchema({"type": ["string", "number", "boolean"]})]
# flow input -> "${data.<column>}", "${run.outputs.<output>}" or a literal value
Mappings = dict[str, Scalar]


class Connection(FileModel):
    name: Name
    type: Literal["open_ai", "azure_open_ai"]
    api_base: NonEmpty  # a URL, or `simulator`
    api_key: str = ""
    api_version: str = ""
    organization: str | None = None
    auth_mode: Literal["key", "meid_token"] | None = "key"
    model: str | None = None
    rpm: PositiveInt | None = None  # requests per minute of each deployment behind it
    tpm: PositiveInt | None = None  # tokens per minute (estimated: prompt + max_tokens)

    @property
    def uses_simulator(self) -> bool:
        return self.api_base == SIMULATOR_BASE

    @property
    def extra(self) -> dict:
        """The optional settings the file set beyond name, type, endpoint, key, version and quota."""
        return self.written(exclude=CORE_CONNECTION_FIELDS | QUOTA_FIELDS)

    @property
    def quota(self) -> dict:
        """`rpm` / `tpm` as the file set them ({} = learn them from the endpoint's headers)."""
        return self.written(exclude=frozenset(type(self).model_fields) - QUOTA_FIELDS)

    def output_identity(self) -> dict:
        """Settings that can change what a flow outputs (part of run keys): no secret, no quota."""
        data = {"name": self.name, "type": self.type, "api_base": self.api_base}
        if self.api_version and self.type == "azure_open_ai":
            data["api_version"] = self.api_version
        data.update(self.extra)
        return data

    def public(self) -> dict:
        """Settings safe to print or record: everything except secrets."""
        return {**self.output_identity(), **self.quota}


class Dataset(FileModel):
    name: Name
    source_rel: RelPath = Field(alias="source")
    description: str = ""
    mappings: Mappings = {}
    # mapped columns whose value may be JSON null; any other null in a mapped column is an error
    allow_null: tuple[NonEmpty, ...] = ()
    # calls per row: each repeat is its own line (row i, repeat r = line i * repeats + r) and LLM
    # call; evaluations then cluster by row (evaluation/repeats.py, docs/replay.md)
    repeats: PositiveInt = 1
    _source: Path | None = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # an evaluator dataset referencing no dataset has no file (semantics says so)
        self._source = None if self.source_rel is None else load_context(context).path(self.source_rel)

    @property
    def source(self) -> Path:
        assert self._source is not None, "a loaded config's datasets all have a file"
        return self._source


class EvaluatorDataset(Dataset):
    # without `source`, the file of the referenced dataset (filled in by ExperimentConfig)
    source_rel: RelPath | None = Field(None, alias="source")
    reference: Name
    # join evaluation rows to the referenced dataset's rows on this column (default: row number)
    key_column: NonEmpty | None = None


class Evaluator(FileModel):
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["flow"]}, {"required": ["code"]},
                                     {"required": ["kind", "class"]}]})

    name: Name
    description: str = ""
    flow_rel: RelPath | None = Field(None, alias="flow")
    # which engine runs `flow`; unset: the use case's engine if it reads the flow, else the one that
    # does (a promptflow evaluation flow keeps working for an agent_framework use case)
    engine_rel: EngineName | None = Field(None, alias="engine")
    code: Annotated[str, Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    aggregate: Identifier | None = None
    # `kind: azure_ai_evaluation` + `class: F1ScoreEvaluator`: an azure-ai-evaluation evaluator
    kind: Literal["azure_ai_evaluation"] | None = None
    class_name: Identifier | None = Field(None, alias="class")
    connection: Name | None = None  # LLM judges: the connection they call (through the gateway)
    model: str | None = None  # LLM judges: model / deployment name (default: the connection's)
    init: dict[str, Any] = {}  # init values of a flex evaluator flow / azure-ai-evaluation class
    # needs no ground truth: `genaiops monitor` may score production traffic with it
    reference_free: bool = False
    # judge calls per experiment line: each its own evaluation line (line * repeats + r) and LLM
    # call (its own cassette entry); scores then cluster by dataset row (docs/replay.md)
    repeats: PositiveInt = 1
    datasets: tuple[EvaluatorDataset, ...] = Field(min_length=1)
    _flow: Path | None = PrivateAttr(None)
    _engine: str | None = PrivateAttr(None)

    def model_post_init(self, context: Any, /) -> None:
        # the flows are read by semantics, which checks the model built without them first
        spec = load_context(context).flows.get(self.flow_rel) if self.flow_rel is not None else None
        if spec is not None:
            self._flow, self._engine = spec.entry, spec.engine

    @property
    def flow(self) -> Path | None:
        return self._flow

    @property
    def engine(self) -> str | None:
        """The engine that runs the evaluation flow (None for code evaluators)."""
        return self._engine


class Variant(FileModel):
    """A named parameter set for flex/prompty flows and agent_framework apps without VARIANTS
    (`init` = keyword arguments of the flex class or of `build`); flows with per-node variants
    (DAG `node_variants`, an app's VARIANTS) take them from the flow instead."""

    name: Name
    description: str = ""
    init: dict[str, Any] = {}


class Retries(FileModel):
    """Bounds on retrying one LLM call: attempts that fail (5xx, connection errors), 429s waited
    out, and the total time, waiting for a turn under the quota included."""

    max_attempts: PositiveInt = 5
    backoff_sec: NonNegative = 0.5
    max_total_sec: Positive = 120
    max_throttled: PositiveInt = 30


class Gateway(FileModel):
    """The loopback LLM gateway that schedules every LLM call of a command (local backend)."""

    enabled: bool = True
    utilization: Share = 0.95  # of a known quota
    max_concurrency: PositiveInt = 256  # per pool and deployment


class Runtime(FileModel):
    backend: Literal["local", "azure"] = "local"
    # line workers per run: a number, or `auto` (from cores, memory, lines and the LLM quota)
    worker_count: Annotated[PositiveInt | Literal["auto"], WithJsonSchema(
        {"type": ["integer", "string"], "minimum": 1, "pattern": "^auto$", "default": "auto"})] = "auto"
    max_parallel: PositiveInt = 4
    line_timeout_sec: PositiveInt = 120
    # one batch run, start to end; unset: enough for every line to use its whole line timeout
    batch_timeout_sec: PositiveInt | None = None
    failed_line_tolerance: NonNegative = 0
    retries: Retries = Field(default_factory=Retries)
    gateway: Gateway = Field(default_factory=Gateway)


class SimulatorQuota(FileModel):
    """An Azure-like quota the simulator enforces per deployment (see `simulator.quota`)."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    request_window_sec: WindowSec = 1.0
    token_window_sec: WindowSec = 10.0


class SimulatorSettings(FileModel):
    rules_rel: RelPath | None = Field(None, alias="rules")
    latency_ms: NonNegative = 0
    quota: SimulatorQuota | None = None
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_PORT
    # seeded stochastic mode: 0 = deterministic rules; > 0 = answers vary per call around the
    # rules' accuracy (simulator.rules.Spread), for repeats, flakiness and record/replay offline
    spread: Annotated[float, Field(ge=0, le=1)] = 0.0
    seed: int = 0
    _rules: Path | None = PrivateAttr(None)

    def model_post_init(self, context: Any, /) -> None:
        if self.rules_rel is not None:
            self._rules = load_context(context).path(self.rules_rel)

    @property
    def rules(self) -> Path | None:
        return self._rules


class LLMSettings(FileModel):
    """Where the LLM answers come from (the `llm:` block; `--llm` overrides the mode): `live`
    calls the endpoints, `record` calls them and keeps the answers in the cassette folder,
    `replay` answers from the cassette alone (no endpoint, no key; a miss fails the command)."""

    mode: Literal["live", "record", "replay"] = "live"
    cassettes_rel: RelPath | None = Field(None, alias="cassettes")  # default cassettes/<use_case>


class Price(TypedDict):
    """Price per 1000 tokens of one model."""

    __pydantic_config__ = ConfigDict(extra="forbid")
    prompt: NonNegative
    completion: NonNegative


class Registry(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")
    backend: Literal["local", "azureml"]
    subscription_id: str
    resource_group: str
    workspace_name: str


def gate_label(metric: str, op: str, threshold, type_: str = "absolute", name: str = "") -> str:
    """A gate's name: the one it was given, else one made from what it checks."""
    if name:
        return name
    if type_ == "regression":
        return f"{metric} no regression vs baseline"
    return f"{metric} {op} {threshold:g}" if isinstance(threshold, (int, float)) else \
        f"{metric} {op} {threshold}"


class Gate(FileModel):
    metric: NonEmpty  # bare, `builtin.<name>` or `<evaluator>.<name>` (genaiops.config.metric_names)
    op: Literal[">=", ">", "<=", "<", "=="]
    threshold: Number
    name: str = ""
    type: Literal["absolute", "regression"] = "absolute"
    evaluator: Name | None = None
    dataset: Name | None = None
    min_samples: PositiveInt | None = None
    alpha: Probability | None = None
    description: str = ""
    # absolute gates: judge the value, or a bound of its interval (`judge: ci_low` with `>=`: the pass
    # rate is shown to reach the threshold, not just estimated to; clustered by row with repeats)
    judge: Literal["value", "ci_low", "ci_high"] = "value"

    @property
    def label(self) -> str:
        return gate_label(self.metric, self.op, self.threshold, self.type, self.name)


class EvaluationSettings(FileModel):
    """How `run evaluate` ranks variants and tests gates (the `evaluation:` block)."""

    primary_metric: NonEmpty | None = None  # ranks the leaderboard; None: the first metric found
    higher_is_better: bool = True
    evaluator: Name | None = None  # where primary_metric comes from when several report it
    dataset: Name | None = None
    min_samples: PositiveInt = 30  # default for gates without their own
    alpha: Probability = 0.05
    confidence: Probability = 0.95
    # `genaiops compare` with this use case as candidate: how much worse than the baseline it may
    # be on the compared metric, in the metric's units (0.02 = two points of accuracy)
    parity_margin: NonNegative | None = None


class MonitoringSettings(FileModel):
    """How `genaiops monitor` judges a deployment's traffic against its approved evaluation
    (the `monitoring:` block). Margins are how much worse than the approved figure production may
    be, in the metric's units, before it is drift; a metric without a margin is reported only."""

    since_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 24
    sample: Annotated[float, Field(gt=0, le=1)] = 1.0  # fraction of traces scored, by trace id
    min_requests: PositiveInt = 20  # fewer: "too thin to judge", no verdict
    confidence: Probability = 0.95
    margins: dict[str, NonNegative] = Field(default_factory=lambda: {
        "builtin.error_rate": 0.05, "builtin.tokens_per_request": 50})
    # `genaiops feedback promote --apply`: where promoted rows go (a JSONL dataset the PR overlay
    # lists), which dataset column an output's correction fills, and an optional PII scrubber
    regressions: RelPath | None = None  # default datasets/<use_case>/regressions.jsonl
    corrections: dict[Identifier, Identifier] = {}  # flow output -> dataset column (default: same name)
    pii_hook: Annotated[str, Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")] | None = None


class ExperimentConfig(ConfigFile):
    """`configs/<use_case>/experiment.yaml` (+ overlay), after `${env:}` resolution."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,40}$")]
    description: str = ""
    engine: EngineName = DEFAULT_ENGINE  # what runs `flow`
    flow_rel: RelPath = Field(alias="flow")
    connections: tuple[Connection, ...] = ()
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    datasets: tuple[Dataset, ...] = Field(min_length=1)
    evaluators: tuple[Evaluator, ...] = ()
    variants: tuple[Variant, ...] = ()
    runtime: Runtime = Field(default_factory=Runtime)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    # set for every run of the flow (promptflow resolves `${<connection>.<key>}` in values); the
    # variables a flow reads are only known to genaiops - and its runs reusable - when declared
    environment_variables: dict[EnvVarName, Scalar] = {}
    environments: tuple[EnvName, ...] = ()  # environments besides overlays and deployment.yaml
    prices: dict[str, Price] = {}
    registry: Registry = {}
    gates: tuple[Gate, ...] = ()
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @model_validator(mode="before")
    @classmethod
    def _evaluator_datasets_default_to_their_reference(cls, data: Any) -> Any:
        """An evaluator dataset without `source` reads the file of the dataset it references."""
        if not isinstance(data, dict) or not isinstance(data.get("evaluators"), list):
            return data
        files: dict = {}
        for d in data.get("datasets") or []:
            if isinstance(d, dict):
                files.setdefault(d.get("name"), d.get("source"))  # the first of a name

        def with_source(block):
            if not isinstance(block, dict) or "source" in block:
                return block
            return {**block, "source": files.get(block.get("reference"))}

        evaluators = [{**ev, "datasets": [with_source(d) for d in ev["datasets"]]}
                      if isinstance(ev, dict) and isinstance(ev.get("datasets"), list) else ev
                      for ev in data["evaluators"]]
        return {**data, "evaluators": evaluators}

    @property
    def flow(self) -> Path:
        return self._loaded.flows[self.flow_rel].entry

    @property
    def regressions_rel(self) -> str:
        """Where `feedback promote --apply` appends rows (`monitoring.regressions`)."""
        return self.monitoring.regressions or f"datasets/{self.name}/regressions.jsonl"

    @property
    def cassettes(self) -> Path:
        """The use case's cassette folder (recorded LLM answers, see genaiops.gateway.cassette)."""
        return self.repo_root / (self.llm.cassettes_rel or f"cassettes/{self.use_case}")

    def with_llm_mode(self, mode: str | None) -> ExperimentConfig:
        """This config with `llm.mode` set (from `--llm`), or itself."""
        if mode is None or mode == self.llm.mode:
            return self
        return self.model_copy(update={"llm": self.llm.model_copy(update={"mode": mode})})

    @property
    def flow_kind(self) -> str:  # dag | flex | prompty (promptflow), maf (agent_framework)
        return self._loaded.flows[self.flow_rel].kind

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise KeyError(name)

    def secrets(self) -> set[str]:
        """Secret values in play (for redaction)."""
        return {c.api_key for c in self.connections if c.api_key}

    def canaries(self) -> set[str]:
        """The `canary` values datasets plant in a flow's context (safety attack packs): masked in
        every report, but not in run outputs, where the safety detectors look for them."""
        from genaiops.workspace.files import iter_jsonl

        values = set()
        sources = {d.source for d in self.datasets} | {
            d.source for e in self.evaluators for d in e.datasets if d.source_rel}
        for source in sources:
            try:
                rows = [row for _line, row in iter_jsonl(source)]
            except (OSError, ValueError):
                continue  # an unreadable dataset is reported where it is read
            values |= {row["canary"] for row in rows if isinstance(row, dict)
                       and isinstance(row.get("canary"), str) and row["canary"]}
        return values

    def summary(self) -> dict:
        """A secret-free description for `--json` output and records."""
        return {
            "use_case": self.use_case,
            "env": self.env,
            "files": [str(f.relative_to(self.repo_root)) for f in self.files],
            "engine": self.engine,
            "flow": self.flow_rel,
            "flow_kind": self.flow_kind,
            "connections": [c.public() for c in self.connections],
            "datasets": [{"name": d.name, "source": d.source_rel} for d in self.datasets],
            "evaluators": [
                {"name": e.name, "flow": e.flow_rel, "engine": e.engine, "code": e.code,
                 "class": e.class_name,
                 "datasets": [{"name": d.name, "reference": d.reference, "source": d.source_rel}
                              for d in e.datasets]}
                for e in self.evaluators
            ],
            "variants": [v.name for v in self.variants],
            "gates": [f"{g.metric} {g.op} {g.threshold}" for g in self.gates],
        }
