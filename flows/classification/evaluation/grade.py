"""Per-line score: 1 when the predicted category equals the label (case and spaces ignored)."""

from promptflow.core import tool


@tool
def grade(groundtruth: str, prediction: str) -> int:
    return int(str(groundtruth).strip().lower() == str(prediction).strip().lower())
