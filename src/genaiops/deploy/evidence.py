"""The evidence of one release candidate: the image built once, pushed by digest, and what it was
evaluated with.

`genaiops run build --push` writes it; the pipeline publishes it as an artifact, shows it to the
approver (`approval_text`) and hands it to every `genaiops run deploy --evidence`, which deploys
exactly `image.reference` (`<registry>/<name>@sha256:...`) and refuses (`check_deployable`) unless

- the evaluation it names passed its gates (verdict `pass`, summary digest recorded),
- where the environment `requires_safety`, that evaluation passed its safety gates (`safety`),
- the checked-out flow, staged with the evidence's variant, still hashes to the flow that was built,
- the image lives in the registry the target environment pulls from.

Binding the *approval* to the digest is the approval source's job (`deploy.approvals`, `deploy.ado`):
they are handed `image.digest`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genaiops.errors import GenaiopsError, UsageError
from genaiops.workspace.files import atomic_write_text

EVIDENCE_SCHEMA = "genaiops.evidence/1"
DIGEST = r"^sha256:[0-9a-f]{64}$"


class EvidenceRefused(GenaiopsError):
    """The candidate does not match what is about to be deployed (exit 1)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PushedImage(_Model):
    repository: str  # <registry>/<name>
    digest: str = Field(pattern=DIGEST)  # the registry manifest digest
    image_id: str = Field(pattern=DIGEST)  # the local image id (`docker image id`)
    tag: str  # the local tag: the artifact key
    labels: dict[str, str] = {}

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


class GateBrief(_Model):
    name: str
    status: str
    message: str


class Evidence(_Model):
    schema_id: Literal[EVIDENCE_SCHEMA] = Field(EVIDENCE_SCHEMA, alias="schema")
    use_case: str
    env: str | None  # the environment overlay the evaluation ran with
    variant: dict  # {label, nodes, init}: what was staged and built
    evaluated_flow_hash: str  # the flow folder the evaluation ran
    flow_hash: str  # the staged serving flow inside the image
    evaluation_id: str
    summary_digest: str
    verdict: Literal["pass", "fail"] | None
    gates: list[GateBrief]
    git_commit: str
    build_id: str  # the CI run that built it (BUILD_BUILDID), "" outside CI
    scan: dict = {}  # the post-build scan before the push: ok, files, bytes
    # the evaluation answered from recorded LLM calls: {mode: replay, cassette: <hash>}
    llm: dict = {}
    # the evaluation's safety gates (genaiops.evaluation.safety): {evaluated, passed, gates}
    safety: dict = {}
    image: PushedImage

    # -- files --------------------------------------------------------------------------------
    def write(self, path: Path) -> Path:
        atomic_write_text(Path(path), json.dumps(self.model_dump(by_alias=True), indent=2, sort_keys=True)
                          + "\n")
        return Path(path)

    @classmethod
    def read(cls, path: Path) -> Evidence:
        """The evidence file `path`; a UsageError naming the file when it is missing or not one."""
        path = Path(path)
        hint = "pass the evidence.json written by `genaiops run build --push`"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read evidence {path}: {exc.strerror or exc}", hint=hint) from None
        except ValueError as exc:
            raise UsageError(f"evidence {path} is not JSON: {exc}", hint=hint) from None
        if not isinstance(data, dict) or data.get("schema") != EVIDENCE_SCHEMA:
            raise UsageError(f"{path} is not a genaiops release evidence ({EVIDENCE_SCHEMA})", hint=hint)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise UsageError(f"evidence {path} is invalid: {problems}", hint=hint) from None

    # -- what a deploy uses ---------------------------------------------------------------------
    def chosen_variant(self):
        """The variant the image was built from (deploy stages it again and compares hashes)."""
        from genaiops.deploy.variant import ChosenVariant

        return ChosenVariant(str(self.variant.get("label", "")), dict(self.variant.get("nodes") or {}),
                             dict(self.variant.get("init") or {}), "evidence",
                             summary_digest=self.summary_digest, evaluated_flow_hash=self.evaluated_flow_hash)

    def pulled_image(self, progress=None):
        """The pushed image as the deploy targets see it, pulled by digest when this machine does
        not have it (the deploy scans it before its gate); refused unless the registry's digest
        holds the image id the evidence recorded. Nothing is built."""
        from genaiops.deploy import dockercli
        from genaiops.deploy.image import LABEL_PREFIX, ImageRef

        reference = self.image.reference
        info = dockercli.inspect("image", reference)
        if info is None:
            (progress or (lambda message: None))(f"docker pull {reference} ...")
            dockercli.docker("pull", reference, timeout=3600)
            info = dockercli.inspect("image", reference)
        if info is None or info.get("Id") != self.image.image_id:
            raise EvidenceRefused(f"{reference} holds image {info.get('Id') if info else 'nothing'}, but the "
                                  f"evidence recorded {self.image.image_id}")
        labels = {k[len(LABEL_PREFIX):]: v for k, v in ((info.get("Config") or {}).get("Labels") or {}).items()
                  if k.startswith(LABEL_PREFIX)}
        return ImageRef(tag=reference, image_id=info["Id"], artifact_key=labels.get("artifact_key", ""),
                        built=False, size_bytes=int(info.get("Size") or 0), labels=labels, reference=reference)

    # -- checks -------------------------------------------------------------------------------
    def check_deployable(self, *, use_case: str, flow_hash: str, registry: str | None,
                         requires_safety: bool = False) -> None:
        """Fail closed unless this candidate may be deployed as `use_case` from this checkout."""
        if self.use_case != use_case:
            raise EvidenceRefused(f"the evidence is for use case {self.use_case!r}, not {use_case!r}")
        if requires_safety and not (self.safety.get("evaluated") and self.safety.get("passed")):
            from genaiops.evaluation.safety import safety_line

            raise EvidenceRefused(
                f"this environment requires a passed safety evaluation, but the evidence of image "
                f"{self.image.digest} says {safety_line(self.safety)}",
                hint="add the attack pack and attack_success_rate gates (docs/evaluation.md), "
                     "evaluate, build and push again")
        if self.verdict != "pass" or not self.summary_digest:
            raise EvidenceRefused(f"evaluation {self.evaluation_id} did not pass its gates "
                                  f"(verdict {self.verdict}): image {self.image.digest} is not deployable")
        if flow_hash != self.flow_hash:
            raise EvidenceRefused(
                f"the checked-out flow (variant {self.variant.get('label')}) hashes to {flow_hash}, but "
                f"image {self.image.digest} was built from {self.flow_hash}",
                hint="deploy from the commit the evidence was built from "
                     f"({self.git_commit}), or build and evaluate this one")
        if not registry:
            raise UsageError("the environment names no image registry to pull from",
                             hint="set image_registry (or image.registry) in deployment.yaml")
        if not self.image.repository.startswith(registry.rstrip("/") + "/"):
            raise EvidenceRefused(f"image {self.image.reference} is not in {registry}, the registry this "
                                  "environment pulls from",
                                  hint="use one registry for every environment of a release (or import "
                                       "the image by digest into this one)")

    # -- what people see ------------------------------------------------------------------------
    def approval_text(self) -> str:
        """One line for an approval's instructions: the digest and why it may be released."""
        gates = ", ".join(f"{g.name}: {g.status}" for g in self.gates) or "no gates"
        from genaiops.evaluation.safety import safety_line

        return (f"Image {self.image.reference} (variant {self.variant.get('label')}, flow "
                f"{self.flow_hash[:19]}, commit {self.git_commit[:12]}). Evaluation {self.evaluation_id}: "
                f"verdict {self.verdict}; gates {gates}; {safety_line(self.safety)}; "
                f"summary digest {self.summary_digest[:16]}." +
                (f" LLM answers replayed from cassette {self.llm.get('cassette', '')[:19]}."
                 if self.llm.get("mode") == "replay" else ""))


def is_digest(value: str) -> bool:
    return bool(re.fullmatch(DIGEST, value or ""))
