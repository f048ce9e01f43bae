"""1 when the judge names the category the flow predicted (case and spaces ignored), else 0."""

from promptflow.core import tool


@tool
def agree(verdict: str, prediction: str) -> int:
    return int(str(verdict).strip().lower() == str(prediction).strip().lower())
