"""Code evaluator for grounded QA: a flex flow (promptflow evaluation run) that is also plain
Python (`QAEvaluator()(answer=..., ground_truth=...)`).

Scores are SQuAD-style over normalised text (lowercase, no punctuation, no articles):
exact_match, token f1, and `contains` (the ground truth appears inside the answer), which
credits a correct answer wrapped in a full sentence that exact_match would reject.
"""

import re
import string
from collections import Counter
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = str(text or "").lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(answer: str, ground_truth: str) -> float:
    pred, gold = normalize(answer).split(), normalize(ground_truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Scores:
    exact_match: float
    f1: float
    contains: float


class QAEvaluator:
    def __init__(self):
        """Explicit, because promptflow's signature inspection fails on `object.__init__`."""

    def __call__(self, answer: str, ground_truth: str) -> Scores:
        norm_answer, norm_truth = normalize(answer), normalize(ground_truth)
        return Scores(
            exact_match=float(norm_answer == norm_truth),
            f1=round(f1_score(answer, ground_truth), 4),
            contains=float(bool(norm_truth) and f" {norm_truth} " in f" {norm_answer} "),
        )

    def __aggregate__(self, line_results: list) -> dict:
        """Mean of each score over the lines; promptflow logs the dict as the run's metrics."""
        rows = [r if isinstance(r, dict) else r.__dict__ for r in line_results if r is not None]
        if not rows:
            raise ValueError("no scored lines to aggregate")
        keys = ("exact_match", "f1", "contains")
        return {key: round(sum(float(row[key]) for row in rows) / len(rows), 4) for key in keys}
