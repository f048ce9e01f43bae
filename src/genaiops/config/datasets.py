"""Datasets checked whole, before any LLM call: every row of a JSON Lines file is a JSON object,
every column a mapping names is in every row, and an evaluator dataset lines up with the dataset
it references - row by row, or by a key column. Problems name the dataset file and line.

promptflow fills a missing column with NaN and runs the line anyway, and a broken line fails only
at run time; checking the whole file at `validate`/`init` (and on every load, so a file changed
after init is caught before experiment spends anything) keeps both out of the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from genaiops.errors import Problem

MAX_PROBLEMS_PER_CHECK = 10  # a broken 100k-row file gives ten located problems and a count
MAX_NESTING = 64  # levels of objects/arrays in a row; deeper ones would crash the JSON writers
MAX_ROW_BYTES = 16 * 1024 * 1024  # one line of a dataset
ALIGN_HINT = ("an evaluator dataset lines up with the dataset it references row by row: give both "
              "the same rows in the same order, or set key_column to join them on a column")


@dataclass
class DatasetFile:
    """A dataset's parsed rows as (line number, row), plus the problems reading it found."""

    shown: str  # the path as the config wrote it (what problems name)
    rows: list[tuple[int, dict]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # located at file:line
    whole_file: tuple[str, str | None] | None = None  # (message, fix) about the file as a whole

    @property
    def usable(self) -> bool:
        return not self.problems and self.whole_file is None


def read_dataset(path: Path, shown: str) -> DatasetFile:
    """Every non-blank line parsed; each bad line is a problem at `shown:line`.

    Lines are split on LF and decoded one by one, so bytes that are not UTF-8, a byte order
    mark, NaN, a lone surrogate or nesting too deep for the reports are each a problem at their
    line here rather than a crash in a later phase, after the LLM calls were paid for."""
    dataset = DatasetFile(shown)
    bad: list[Problem] = []
    try:
        with Path(path).open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                row, problem = _parse_line(raw)
                if problem is not None:
                    bad.append(Problem(shown, number, None, *problem))
                elif row is not None:
                    dataset.rows.append((number, row))
    except OSError as exc:
        dataset.whole_file = (f"cannot read dataset {shown!r}: {exc.strerror or exc}", None)
        return dataset
    dataset.problems = _capped(bad, shown, "more bad lines")
    if not bad and not dataset.rows:
        dataset.whole_file = (f"dataset {shown!r} is empty", "add at least one row")
    return dataset


ONE_OBJECT = "fix that line: one JSON object per line"


def _parse_line(raw: bytes) -> tuple[dict | None, tuple[str, str] | None]:
    """(row, None), (None, None) for a blank line, or (None, (message, fix))."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return None, ("starts with a byte order mark (BOM)", "save the file as UTF-8 without BOM")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                      "save the file as UTF-8")
    if not line.strip():
        return None, None
    if len(raw) > MAX_ROW_BYTES:
        return None, (f"row is {len(raw):,} bytes, over the {MAX_ROW_BYTES:,} a row may hold",
                      "split the row, or keep large content in files the flow reads")
    try:
        row = json.loads(line, parse_constant=_no_constant)
    except RecursionError:
        return None, (f"nested too deeply (more than {MAX_NESTING} levels)", ONE_OBJECT)
    except json.JSONDecodeError as exc:
        return None, (f"not valid JSON ({exc.msg}, column {exc.colno})", ONE_OBJECT)
    except ValueError as exc:  # NaN/Infinity, integers over Python's digit limit
        return None, (f"not valid JSON ({str(exc).split(':')[0]})", ONE_OBJECT)
    if not isinstance(row, dict):
        return None, ("is not a JSON object", "each line must be an object of column: value")
    problem = _value_problem(row)
    return (None, problem) if problem else (row, None)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _value_problem(row: dict) -> tuple[str, str] | None:
    """Nesting deeper than MAX_NESTING, or a string no UTF-8 file can hold (a lone surrogate
    such as JSON "\\ud800"): reports, ledgers and engines write rows back out as UTF-8."""
    stack = [(row, 1, None)]
    while stack:
        value, depth, column = stack.pop()
        if depth > MAX_NESTING:
            return (f"column {column!r} is nested more than {MAX_NESTING} levels deep",
                    "flatten the value")
        if isinstance(value, dict):
            for key, item in value.items():
                if _unencodable(key):
                    return (f"column name {key!r} holds a lone surrogate (not valid Unicode)",
                            "fix the \\uXXXX escape")
                stack.append((item, depth + 1, key if column is None else column))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, column) for item in value)
        elif isinstance(value, str) and _unencodable(value):
            return (f"column {column!r} holds a lone surrogate (not valid Unicode)",
                    "fix the \\uXXXX escape: a surrogate needs its pair, e.g. \\ud83d\\ude00")
    return None


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _capped(problems: list[Problem], shown: str, what: str) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS_PER_CHECK:
        return problems
    extra = len(problems) - MAX_PROBLEMS_PER_CHECK
    return problems[:MAX_PROBLEMS_PER_CHECK] + [Problem(shown, None, None, f"... and {extra} {what}")]


def missing_column(dataset: DatasetFile, column: str, mapped_by: str,
                   null_ok: bool = False, missing_ok: bool = False) -> list[Problem]:
    """One problem per row (capped) that lacks `column` (unless `missing_ok`: the regressions
    dataset, whose rows promoted without a correction lack the ground truth), or holds null there
    (unless `null_ok`): the flow would get None for an input a person meant to fill."""
    problems = []
    for number, row in dataset.rows:
        if column not in row and missing_ok:
            continue
        if column not in row:
            problems.append(Problem(dataset.shown, number, None,
                                    f"row has no column {column!r}, which {mapped_by} maps",
                                    f"add it to every row, or map one of: "
                                    f"{', '.join(sorted(row)) or '(none)'}"))
        elif row[column] is None and not null_ok:
            problems.append(Problem(dataset.shown, number, None,
                                    f"column {column!r}, which {mapped_by} maps, is null",
                                    f"give it a value, or allow null for it: `allow_null: "
                                    f"[{column}]` on that dataset"))
    return _capped(problems, dataset.shown, f"rows without a value in column {column!r}")


def misaligned_count(evaluation: DatasetFile, reference: DatasetFile, eval_name: str,
                     ref_name: str) -> str | None:
    """Row by row: both files need the same number of rows."""
    if len(evaluation.rows) == len(reference.rows):
        return None
    return (f"evaluator dataset {eval_name!r} ({evaluation.shown}) has {len(evaluation.rows)} "
            f"rows but dataset {ref_name!r} ({reference.shown}) has {len(reference.rows)}")


def join_key(value) -> str | None:
    """The comparable form of a key value (1 and "1" stay different); None when unusable."""
    if isinstance(value, (str, int, float, bool)):
        return json.dumps(value)
    return None


def keyed_lines(dataset: DatasetFile, column: str) -> tuple[dict[str, int], list[Problem]]:
    """{key: line} of a dataset, and a problem for each row without a usable, unique key."""
    keys: dict[str, int] = {}
    problems = []
    for number, row in dataset.rows:
        if column not in row:
            problems.append(Problem(dataset.shown, number, None,
                                    f"row has no column {column!r}, the key_column",
                                    "every row of both datasets needs the key"))
            continue
        key = join_key(row[column])
        if key is None:
            problems.append(Problem(dataset.shown, number, None,
                                    f"{column} must be a string or a number, not {row[column]!r}"))
        elif key in keys:
            problems.append(Problem(dataset.shown, number, None,
                                    f"{column} {row[column]!r} is also at line {keys[key]}",
                                    "key values must be unique"))
        else:
            keys[key] = number
    return keys, problems


def key_join_problems(evaluation: DatasetFile, reference: DatasetFile, column: str) -> list[Problem]:
    """Both files keyed by `column`, and the same keys on both sides."""
    eval_keys, problems = keyed_lines(evaluation, column)
    ref_keys, ref_problems = keyed_lines(reference, column)
    problems += ref_problems
    for key, number in eval_keys.items():
        if key not in ref_keys:
            problems.append(Problem(evaluation.shown, number, None,
                                    f"no row of {reference.shown} has {column} {json.loads(key)!r}",
                                    "every evaluation row must match a row it evaluates"))
    for key, number in ref_keys.items():
        if key not in eval_keys:
            problems.append(Problem(reference.shown, number, None,
                                    f"no row of {evaluation.shown} has {column} {json.loads(key)!r}",
                                    "every row of the referenced dataset needs its evaluation row"))
    return _capped(problems, evaluation.shown, f"rows that do not join on {column!r}")
