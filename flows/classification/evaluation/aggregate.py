"""Run-level metrics. accuracy is what gates use; macro_recall exposes a variant that is right
on frequent categories but blind to a rare one, which accuracy alone hides."""

from promptflow.core import log_metric, tool


@tool
def aggregate(scores: list, groundtruths: list) -> dict:
    total = len(scores)
    if total == 0:
        # No scored line is a failure upstream, never a perfect (or empty) score.
        raise ValueError("no scored lines to aggregate")
    accuracy = sum(scores) / total
    per_label = {}
    for score, label in zip(scores, groundtruths):
        hits, seen = per_label.get(label, (0, 0))
        per_label[label] = (hits + score, seen + 1)
    macro_recall = sum(hits / seen for hits, seen in per_label.values()) / len(per_label)
    log_metric("accuracy", round(accuracy, 4))
    log_metric("macro_recall", round(macro_recall, 4))
    return {"accuracy": accuracy, "macro_recall": macro_recall, "count": total}
