"""azure-ai-evaluation evaluators by class name (`kind: azure_ai_evaluation`, `class: F1ScoreEvaluator`).

They run in this process: azure-ai-evaluation 1.18 no longer depends on promptflow and installs
beside it without changing anything installed (docs/evaluation.md). Offline evaluators (F1, BLEU,
GLEU, ROUGE) need nothing else; LLM judges (relevance, coherence, ...) get a model configuration
built from the evaluator's `connection`, whose endpoint is the command's LLM gateway (pool
`evaluators`), so quota scheduling, retries, the simulator and record/replay apply to them as to
evaluation flows. A row's result is flattened into scores (numbers gate, text such as the judge's
reason is kept per row for the drill-down).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time

from genaiops.engines.base import FlowReads
from genaiops.errors import ConfigError
from genaiops.evaluation.evaluators.base import (
    AlignedRow,
    EvalOutcome,
    EvalTask,
    score_rows,
)
from genaiops.secrets import redact

PACKAGE = "azure-ai-evaluation"
INSTALL_HINT = "run `make setup` (or `pip install 'genaiops[azure-ai-evaluation]'`)"
# bookkeeping keys of a result that are not scores: thresholds, token counts, duplicates
_DROP_SUFFIXES = ("_threshold", "_properties", "_status", "_prompt_tokens", "_completion_tokens",
                  "_total_tokens", "_finish_reason", "_model", "_sample_input", "_sample_output")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        raise ConfigError(f"{PACKAGE} is not installed: azure_ai_evaluation evaluators need it",
                          hint=INSTALL_HINT) from None


def evaluator_class(name: str):
    package_version()
    module = importlib.import_module("azure.ai.evaluation")
    cls = getattr(module, name, None)
    if not inspect.isclass(cls) or not name.endswith("Evaluator"):
        raise ConfigError(f"azure-ai-evaluation has no evaluator class {name!r}",
                          hint="use a class of azure.ai.evaluation, e.g. F1ScoreEvaluator, "
                               "RelevanceEvaluator")
    return cls


def is_judge(cls) -> bool:
    """An LLM judge: its constructor takes a model configuration."""
    return "model_config" in inspect.signature(cls.__init__).parameters


def flatten(result) -> dict:
    """One row's result as scores: bookkeeping dropped, nested values as JSON text."""
    if not isinstance(result, dict):
        return {"score": result}
    scores = {}
    for key, value in result.items():
        if key.endswith("_properties") and isinstance(value, dict):
            scores.update(flatten(value))  # ROUGE's precision / recall / f1 live here
            continue
        if key.startswith("gpt_") or key.endswith(_DROP_SUFFIXES):
            continue
        if key.endswith("_score") and result.get(key[: -len("_score")]) == value:
            continue  # `f1_score_score` repeats `f1_score`
        scores[key] = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
    return scores


def _row_error(exc: Exception) -> str:
    text = str(exc)
    missing = re.search(r"Resource\s+'?(\w+)'?\s+not found", text)
    if isinstance(exc, LookupError) and missing:  # BLEU, GLEU, METEOR tokenize with nltk data
        return (f"nltk data {missing.group(1)!r} is not installed (fix: python -m nltk.downloader "
                f"{missing.group(1)}, or set NLTK_DATA to a folder that has it)")
    return redact(f"{type(exc).__name__}: {text}")[:500]


class AzureAIEvaluator:
    def __init__(self, class_name: str, *, init: dict | None = None, connection=None,
                 connection_identity: dict | None = None, model: str | None = None):
        self.class_name = class_name
        self.init = dict(init or {})
        self.connection = connection  # genaiops Connection, for LLM judges
        self.connection_identity = connection_identity
        self.model = model
        self.endpoint: str | None = None  # the gateway's URL for the connection (bind)

    @property
    def calls_llm(self) -> bool:
        return self.connection is not None

    def bind(self, endpoints: dict[str, str]) -> None:
        """Point the judge at the session's endpoint for its connection (the gateway's)."""
        if self.connection is not None:
            self.endpoint = endpoints[self.connection.name]

    def content_identity(self) -> dict:
        return {"kind": "azure_ai_evaluation", "class": self.class_name, "init": self.init,
                "model": self.model, "connection": self.connection_identity}

    def engine_version(self) -> str:
        return f"{PACKAGE}=={package_version()}"

    def reads(self) -> FlowReads:
        return FlowReads(connections={self.connection.name: "connection"} if self.connection else {})

    def _model_config(self) -> dict:
        conn = self.connection
        if self.endpoint is None:
            raise ConfigError(f"LLM judge {self.class_name}: no endpoint for connection {conn.name!r}")
        if conn.type == "azure_open_ai":
            return {"type": "azure_openai", "azure_endpoint": self.endpoint, "api_key": conn.api_key,
                    "azure_deployment": self.model or conn.model or "",
                    "api_version": conn.api_version or "2024-06-01"}
        return {"type": "openai", "base_url": self.endpoint, "api_key": conn.api_key,
                "model": self.model or conn.model or "gpt-4o-mini"}

    def _instance(self):
        cls = evaluator_class(self.class_name)
        kwargs = dict(self.init)
        if is_judge(cls):
            if self.connection is None:
                raise ConfigError(f"{self.class_name} is an LLM judge: it needs `connection:`",
                                  hint="set the evaluator's connection to one of experiment.yaml's")
            kwargs["model_config"] = self._model_config()
        if "credential" in inspect.signature(cls.__init__).parameters and "credential" not in kwargs:
            # content-safety evaluators call an Azure AI project (init: azure_ai_project) as the
            # signed-in identity; not through the gateway (it is not an OpenAI endpoint)
            from azure.identity import DefaultAzureCredential

            kwargs["credential"] = DefaultAzureCredential()
        try:
            return cls(**kwargs)
        except Exception as exc:
            raise ConfigError(f"{self.class_name}({', '.join(self.init)}) failed: "
                              f"{type(exc).__name__}: {redact(str(exc))[:300]}",
                              hint="check the evaluator's `init:` against its constructor") from None

    def evaluate(self, task: EvalTask, rows: list[AlignedRow], name: str) -> EvalOutcome:
        started = time.monotonic()
        # one bad row is that row's error (e.g. nltk data missing)
        out_rows, _results = score_rows(task, rows, self._instance(), flatten, _row_error)
        return EvalOutcome(
            key=task.key, evaluator=task.evaluator.name, eval_dataset=task.eval_dataset.name,
            dataset=task.record.dataset, variant=task.record.variant, run_key=task.record.key,
            kind="azure_ai_evaluation", mode="code", rows=out_rows,
            duration_s=round(time.monotonic() - started, 3))
