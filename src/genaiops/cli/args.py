"""argparse value types of the commands' flags (a bad value is a usage error, exit 2), by the name
`cli/flags.yaml` gives as `type:`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def csv_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def runs_at_once(value: str) -> int:
    """`--max-parallel`: a whole number from 1 to the most batch runs genaiops starts at once."""
    from genaiops.execution.capacity import MAX_PARALLEL_RUNS

    number = positive_int(value)
    if number > MAX_PARALLEL_RUNS:
        raise argparse.ArgumentTypeError(f"{value!r} is more than {MAX_PARALLEL_RUNS} runs at once; "
                                         f"use {MAX_PARALLEL_RUNS} or less")
    return number


def amount(value: str) -> float:
    """A finite number >= 0 (`nan` would switch a comparison off, `inf` is no limit)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number >= 0")
    return number


def probability(value: str) -> float:
    """A number strictly between 0 and 1 (a confidence level)."""
    number = amount(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and 1, e.g. 0.95")
    return number


def fraction(value: str) -> float:
    """A number in (0, 1]: a share of something, 1 = all of it."""
    number = amount(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0 and at most 1, e.g. 0.2")
    return number


def hours(value: str) -> float:
    """A duration as `90m`, `24h`, `7d` (or a number of hours)."""
    units = {"m": 1 / 60, "h": 1.0, "d": 24.0}
    text = value.strip().lower()
    scale = units.get(text[-1:], None)
    number = amount(text[:-1] if scale is not None else text)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a duration above 0, e.g. 24h")
    return number * (scale or 1.0)


CONVERTERS = {"int": int, "float": float, "str": str, "path": Path, "csv_list": csv_list,
              "positive_int": positive_int, "runs_at_once": runs_at_once, "amount": amount,
              "probability": probability, "fraction": fraction, "hours": hours}
