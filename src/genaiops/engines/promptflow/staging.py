"""Private copies of flows to run or build: promptflow writes logs and caches into the flow
folder, and some variants can only be expressed by editing a copy (never the repo's flow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

IGNORE = shutil.ignore_patterns("__pycache__", ".promptflow", "*.pyc", ".genaiops", "process_log")


def copy_flow(source: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=IGNORE)
    return dest


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_prompty_overrides(prompty: Path, overrides: dict) -> None:
    """Merge `overrides` (e.g. {"model": {"parameters": {"temperature": 0.9}}}) into the front matter.

    promptflow 1.18 drops `init=` for `.prompty` batch runs, so a prompty variant is a staged copy.
    """
    if not overrides:
        return
    text = prompty.read_text(encoding="utf-8")
    _, front, body = text.split("---", 2)
    merged = deep_merge(yaml.safe_load(front) or {}, overrides)
    prompty.write_text("---\n" + yaml.safe_dump(merged, sort_keys=False) + "---" + body, encoding="utf-8")
