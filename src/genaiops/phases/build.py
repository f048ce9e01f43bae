"""build: turn a passed evaluation into one release candidate - build its serving image once, push
it by digest, and write the evidence every later deploy checks (`deploy.evidence`).

    genaiops run build -u classification -e dev --summary report/summary.json

The variant is the evaluation's best one (`summary.json` `best`), the checkout must still hold the
flow that was evaluated (same content hash), and the summary must have passed its gates and be
one `run evaluate` wrote: its digest recorded and recomputed, and a summary of that digest kept in
the state folder (`evaluation.store.verified_summary`) - a summary.json edited and re-digested by
hand is refused. The image is scanned (the staged flow byte for byte, no known
secret) before it is pushed. Nothing is registered here: `run deploy` registers the flow in each
environment's registry after its gate. `run deploy` shares the staging and image steps below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genaiops.errors import GenaiopsError, UsageError
from genaiops.phases.context import PhaseContext

if TYPE_CHECKING:
    from genaiops.deploy.evidence import Evidence


@dataclass
class Candidate:
    """A variant staged for serving: what an image is built from and a deployment is bound to."""

    chosen: object  # deploy.variant.ChosenVariant
    staged: Path
    flow: object  # hashing.Snapshot of the staged flow: the files the image scan expects
    connections: object  # engines.base.ServingConnections

    @property
    def flow_hash(self) -> str:
        return self.flow.content_hash


def stage_candidate(ctx: PhaseContext, chosen, *, simulator_url: str | None) -> Candidate:
    """Stage `chosen` for serving, hash it and work out its connections (nothing leaves the machine)."""
    from genaiops.gateway.llm_session import endpoints
    from genaiops.hashing import snapshot

    experiment, engine = ctx.config, ctx.engine
    work = ctx.workspace.deploy_dir(experiment.use_case)
    work.mkdir(parents=True, exist_ok=True)
    staged = engine.stage_for_serving(ctx.flow, chosen.spec(), work / "staged" / "flow")
    fixed_simulator = f"http://127.0.0.1:{experiment.simulator.port}"
    connections = engine.serving_connections(
        experiment.connections, endpoints(experiment, simulator_url or fixed_simulator),
        endpoints(experiment, fixed_simulator))
    return Candidate(chosen, staged, snapshot(staged, engine.cache_patterns), connections)


def register_candidate(ctx: PhaseContext, candidate: Candidate, progress):
    """Register the staged flow in the use case's registry, only when its content is new there."""
    from genaiops.registry import AssetSpec

    experiment, engine = ctx.config, ctx.engine
    backend = ctx.deployment.registry.get("backend") or experiment.registry.get("backend", "local")
    registration = ctx.project.registry(backend, experiment.registry).register(
        AssetSpec(name=f"{experiment.use_case}-flow", kind="flow", path=candidate.staged,
                  description=f"deployed flow, variant {candidate.chosen.label}", ignores=engine.cache_patterns,
                  properties=engine.registration_properties(candidate.staged)))
    progress(f"flow {registration.uri} ({'registered' if registration.created else 'unchanged'})")
    return registration


def build_image(ctx: PhaseContext, candidate: Candidate, progress):
    """Build (or reuse) the candidate's serving image (the deploy phase scans it before the gate)."""
    from genaiops.deploy.image import ImageBuilder, git_commit

    config, use_case = ctx.deployment, ctx.config.use_case
    ctx.workspace.deploy_dir(use_case).mkdir(parents=True, exist_ok=True)
    builder = ImageBuilder(engine=ctx.engine, name=config.image_name, base_image=config.base_image,
                           work_dir=ctx.workspace.deploy_dir(use_case), wheel_cache=ctx.workspace.wheel_cache,
                           progress=progress, namespace=ctx.workspace.tag_namespace)
    chosen = candidate.chosen
    image = builder.ensure(candidate.staged, candidate.flow_hash, candidate.connections.descriptions, {
        "use_case": use_case, "variant": chosen.label, "summary_digest": chosen.summary_digest or "none",
        "git_commit": git_commit(ctx.config.repo_root)})
    progress(f"image {image.tag} {image.image_id[:19]} "
             f"({f'built in {image.build_seconds:.0f}s' if image.built else 'reused'})")
    return image


def scan_candidate(image, candidate: Candidate, progress) -> dict:
    """The post-build scan (`deploy.image_scan`): the image holds the staged flow byte for byte and
    no known secret; refused otherwise. Returns the scan's summary for the evidence."""
    from genaiops.deploy.image_scan import require_clean, scan_image
    from genaiops.secrets import known_secrets

    result = scan_image(image.reference or image.tag, flow_dir=image.labels.get("flow_dir") or "/flow",
                        expected={entry.rel: entry.sha256 for entry in candidate.flow.files},
                        generated=filter(None, image.labels.get("generated", "").split(",")),
                        secrets=known_secrets())
    require_clean(result)
    progress(f"image scan: {result.files} files, {result.bytes / 1e6:.0f} MB in {result.seconds:.1f}s: "
             "the flow as hashed, no known secret")
    return result.as_dict()


# -- the build phase ----------------------------------------------------------------------------

@dataclass
class BuildOptions:
    env: str
    summary: Path  # summary.json written by `genaiops run evaluate`
    evidence: Path | None = None  # where to write evidence.json (default: the deploy folder)
    progress: object = None


@dataclass
class BuildResult:
    evidence: Evidence
    path: Path
    built: bool

    def to_json(self) -> dict:
        return {"phase": "build", "ok": True, "evidence_file": str(self.path), "built": self.built,
                **self.evidence.model_dump(by_alias=True)}


def run_build(ctx: PhaseContext, options: BuildOptions) -> BuildResult:
    from genaiops.deploy.evidence import Evidence, GateBrief, PushedImage
    from genaiops.deploy.push import push_by_digest
    from genaiops.evaluation.safety import safety_result

    progress = options.progress or (lambda message: None)
    summary = _passed_summary(ctx, Path(options.summary))
    environment = ctx.deployment.environment(options.env)
    registry = ctx.deployment.image_registry_for(environment)
    if not registry:
        raise UsageError(f"environment {options.env!r} names no image registry to push to",
                         hint="set image_registry (or image.registry) in deployment.yaml, e.g. "
                              "${env:GENAIOPS_IMAGE_REGISTRY}")
    candidate = stage_candidate(ctx, _chosen(summary), simulator_url=None)
    image = build_image(ctx, candidate, progress)
    scan = scan_candidate(image, candidate, progress)
    repository, digest = push_by_digest(image.tag, registry, progress)
    evidence = Evidence(
        use_case=ctx.config.use_case, env=ctx.config.env, variant=candidate.chosen.as_dict(),
        evaluated_flow_hash=summary.best.flow_hash, flow_hash=candidate.flow_hash,
        evaluation_id=summary.id, summary_digest=summary.digest(), verdict=summary.verdict,
        gates=[GateBrief(name=g.name or g.metric, status=g.status, message=g.message) for g in summary.gates],
        git_commit=image.labels.get("git_commit", ""), build_id=os.environ.get("BUILD_BUILDID", ""),
        scan={k: scan[k] for k in ("ok", "files", "bytes")}, safety=safety_result(summary),
        llm={"mode": summary.llm.mode, "cassette": summary.llm.cassette} if summary.llm.mode else {},
        image=PushedImage(repository=repository, digest=digest, image_id=image.image_id, tag=image.tag,
                          labels=image.labels))
    path = options.evidence or ctx.workspace.deploy_dir(ctx.config.use_case) / "evidence.json"
    evidence.write(path)
    progress(f"evidence {path}: {evidence.image.reference}")
    return BuildResult(evidence, Path(path), image.built)


def _passed_summary(ctx: PhaseContext, path: Path):
    """The evaluation to release: this use case's, unmodified, gates passed, flow unchanged since."""
    from genaiops.evaluation.store import verified_summary
    from genaiops.evaluation.summary import Summary
    from genaiops.hashing import hash_tree

    try:
        summary = Summary.from_json(path.read_text(encoding="utf-8"), source=str(path))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}",
                         hint="pass the summary.json written by `genaiops run evaluate`") from None
    use_case = ctx.config.use_case
    if summary.use_case != use_case:
        raise UsageError(f"{path} evaluates use case {summary.use_case!r}, not {use_case!r}")
    summary = verified_summary(ctx.workspace, summary, str(path))  # the copy evaluate kept
    if summary.verdict != "pass" or summary.best is None:
        raise GenaiopsError(f"evaluation {summary.id} did not pass its gates (verdict {summary.verdict}): "
                            "no release candidate is built from it")
    evaluated = hash_tree(ctx.flow.root, ctx.engine.cache_patterns, boundary=ctx.flow.boundary)
    if evaluated != summary.best.flow_hash:
        raise GenaiopsError(f"the flow in this checkout ({evaluated[:19]}) is not the one evaluation "
                            f"{summary.id} ran ({summary.best.flow_hash[:19]})",
                            hint="evaluate this checkout, then build")
    return summary


def _chosen(summary):
    from genaiops.deploy.variant import ChosenVariant

    spec = summary.best.variant_spec or {}
    return ChosenVariant(summary.best.variant, dict(spec.get("nodes") or {}), dict(spec.get("init") or {}),
                         "best", summary_digest=summary.digest(), evaluated_flow_hash=summary.best.flow_hash)
