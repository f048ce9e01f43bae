"""`genaiops feedback promote`: flagged production traces -> reviewed rows of a regressions dataset.

1. Feedback spans (`gen_ai.user.feedback`, posted to the deployed image's `/feedback`) of the use
   case and environment, chosen by `--where` (`rating<0`, `label==wrong`, ...), plus with
   `--failures` the failed requests `monitor` counts.
2. Each rated trace's root span gives the row's inputs (`genaiops.inputs`: recorded only where the
   environment captures content) and, when the feedback carries a correction, the expected output
   in the column `monitoring.corrections` maps it to. Without a correction the row is inputs only:
   the next verdict runs the flow on it and its reference-free evaluators score it; evaluators
   that need the missing ground truth skip it and say so (`evaluators.base.unlabelled`).
3. Every row goes through the redactor (known secrets), a built-in PII scrub (e-mail addresses,
   phone and card numbers) and the optional `monitoring.pii_hook` (`file.py:function`, row -> row),
   and is deduplicated by its content hash against the dataset and the other candidates.
4. The candidates are written first for review (`.genaiops/feedback/<uc>/<env>/candidates.jsonl`);
   `--apply` appends them to the regressions dataset (`monitoring.regressions`), which the PR
   overlay lists; `run init` registers it when its content changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genaiops.errors import ConfigError, GenaiopsError, Problem, UsageError
from genaiops.phases.context import PhaseContext
from genaiops.secrets import redact_data
from genaiops.workspace.files import atomic_write_text, iter_jsonl

FEEDBACK_SPAN = "gen_ai.user.feedback"
_WHERE = re.compile(r"^\s*(rating|label)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_PII = [(re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
        (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "<card>"),
        (re.compile(r"\+?\d[\d ().-]{7,}\d"), "<phone>")]


@dataclass
class PromoteOptions:
    env: str
    where: str = "rating<0"
    limit: int | None = None
    apply: bool = False
    failures: bool = False


@dataclass
class PromoteResult:
    use_case: str
    env: str
    candidates: int
    new_rows: int
    duplicates: int
    skipped: list[str] = field(default_factory=list)  # why a flagged trace gave no row
    inputs_only: int = 0  # new rows without a correction: no ground truth, scored by reference-free evaluators
    candidates_file: str = ""
    dataset: str = ""
    applied: bool = False

    def to_json(self) -> dict:
        return {"command": "feedback promote", **asdict(self)}


def parse_where(text: str):
    """`rating<0`, `label==wrong`: one comparison on the feedback's rating or label."""
    match = _WHERE.match(text or "")
    if not match:
        raise UsageError(f"--where {text!r} is not `<rating|label> <op> <value>`", hint='e.g. --where "rating<0"')
    key, op, raw = match.groups()
    if key == "rating":
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"--where: {raw!r} is not a number to compare the rating with") from None
    else:
        value = raw.strip("'\"")
        if op not in ("==", "!="):
            raise UsageError("--where: a label compares with == or != only")
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}

    def test(attrs: dict) -> bool:
        got = attrs.get(f"genaiops.feedback.{key}")
        return got is not None and ops[op](got, value)

    return test


def scrub_pii(value):
    if isinstance(value, str):
        for pattern, mask in _PII:
            value = pattern.sub(mask, value)
        return value
    if isinstance(value, list):
        return [scrub_pii(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub_pii(v) for k, v in value.items()}
    return value


def _hook(repo_root: Path, spec: str | None):
    if not spec:
        return None
    from genaiops.workspace.repo import resolve_inside

    file, func = spec.rsplit(":", 1)
    path = resolve_inside(repo_root, file)
    if path is None or not path.is_file():
        raise ConfigError([Problem("experiment.yaml", None, "monitoring.pii_hook",
                                   f"{file} is not a file inside the repository", "name a .py file of the repo")])
    module_spec = importlib.util.spec_from_file_location(f"genaiops_pii_hook_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        return getattr(module, func)
    except Exception as exc:  # the user's hook: say where, not a traceback
        raise ConfigError([Problem(file, None, "monitoring.pii_hook", f"cannot load {func}: "
                                   f"{type(exc).__name__}: {exc}", "fix the hook")]) from None


def content_hash(row: dict) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def run_promote(ctx: PhaseContext, options: PromoteOptions) -> PromoteResult:
    from genaiops.monitoring.store import TraceStore
    from genaiops.workspace.repo import resolve_inside

    config, workspace = ctx.config, ctx.workspace
    use_case, settings = config.use_case, config.monitoring
    wanted = parse_where(options.where)
    dataset_rel = config.regressions_rel
    dataset = resolve_inside(workspace.repo_root, dataset_rel)
    if dataset is None:
        raise ConfigError([Problem("experiment.yaml", None, "monitoring.regressions",
                                   f"{dataset_rel} leaves the repository", "use a path inside the repo")])
    hook = _hook(workspace.repo_root, settings.pii_hook)
    store = TraceStore(workspace.traces_db)
    spans = store.spans(use_case=use_case, environment=options.env)
    roots = {s.trace_id: s for s in spans if s.name.startswith("invoke_agent") and not s.parent_span_id}
    by_response = {s.attributes.get("gen_ai.response.id"): s for s in roots.values()}
    flagged: list[tuple[object, dict]] = []  # (root span, feedback attributes)
    skipped: list[str] = []
    for span in spans:
        if span.name != FEEDBACK_SPAN or not wanted(span.attributes):
            continue
        attrs = span.attributes
        root = roots.get(attrs.get("genaiops.feedback.trace_id", "")) or \
            by_response.get(attrs.get("genaiops.feedback.response_id"))
        if root is None:
            skipped.append(f"feedback for {attrs.get('genaiops.feedback.trace_id') or attrs.get('genaiops.feedback.response_id')}: "
                           "its request is not in the store")
            continue
        flagged.append((root, attrs))
    if options.failures:
        seen = {root.trace_id for root, _ in flagged}
        flagged += [(root, {}) for root in roots.values() if root.failed and root.trace_id not in seen]

    existing = set()
    if dataset.is_file():
        try:
            existing = {content_hash(row) for _, row in iter_jsonl(dataset)}
        except (ValueError, OSError) as exc:
            raise GenaiopsError(f"{dataset_rel} cannot be read: {exc}", hint="fix or remove the line") from None
    rows, duplicates, inputs_only = [], 0, 0
    for root, attrs in flagged:
        if options.limit is not None and len(rows) >= options.limit:
            break
        raw = root.attributes.get("genaiops.inputs")
        try:
            inputs = json.loads(raw) if raw else None
        except ValueError:
            inputs = None
        if not isinstance(inputs, dict):
            skipped.append(f"trace {root.trace_id}: no inputs recorded (the environment does not capture "
                           "content: capture_content in deployment.yaml)")
            continue
        row = dict(inputs)
        correction = attrs.get("genaiops.feedback.correction")
        if correction:
            try:
                value = json.loads(correction)
            except ValueError:
                value = correction
            if not isinstance(value, dict):
                outputs = json.loads(root.attributes.get("genaiops.outputs") or "{}") or {}
                first = next(iter(outputs), "expected")
                value = {first: value}
            for output, expected in value.items():
                row[settings.corrections.get(output, output)] = expected
        row = scrub_pii(redact_data(row))
        if hook is not None:
            try:
                row = hook(row)
            except Exception as exc:  # the user's hook
                raise GenaiopsError(f"monitoring.pii_hook failed on a row: {type(exc).__name__}: {exc}") from None
            if not isinstance(row, dict):
                raise GenaiopsError("monitoring.pii_hook must return the row as a dict")
        digest = content_hash(row)
        if digest in existing:
            duplicates += 1
            continue
        existing.add(digest)
        rows.append(row)
        inputs_only += not correction
    folder = workspace.feedback_dir(use_case, options.env)
    candidates = folder / "candidates.jsonl"
    atomic_write_text(candidates, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))
    result = PromoteResult(use_case=use_case, env=options.env, candidates=len(flagged), new_rows=len(rows),
                           duplicates=duplicates, skipped=skipped, inputs_only=inputs_only, candidates_file=str(candidates),
                           dataset=dataset_rel)
    if options.apply and rows:
        before = dataset.read_text(encoding="utf-8") if dataset.is_file() else ""
        if before and not before.endswith("\n"):
            before += "\n"
        atomic_write_text(dataset, before + candidates.read_text(encoding="utf-8"))
        result.applied = True
    return result
