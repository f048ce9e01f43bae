"""argparse value types shared by the command modules (a bad value is a usage error, exit 2)."""

from __future__ import annotations

import argparse


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


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


def probability(value: str) -> float:
    number = non_negative_float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and 1, e.g. 0.95")
    return number
