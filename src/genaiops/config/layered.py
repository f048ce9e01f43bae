"""What every genaiops YAML config shares: a base file plus an `<name>.<env>.yaml` overlay that
replaces whole top-level blocks, `${env:}` references, JSON Schema errors (the schema generated
from the file's model) turned into located, fixable problems, and the typed object built by that
model. Used by `experiment.yaml` and `deployment.yaml` alike."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from genaiops.config.envvars import EnvResolver, load_dotenv_values
from genaiops.config.filemodel import LoadContext
from genaiops.config.schemagen import file_schema
from genaiops.config.yamlsrc import SourceMap, format_path, load_yaml_file
from genaiops.errors import ConfigError, Problem

Model = TypeVar("Model", bound=BaseModel)
DEFAULT_KEY_HINT = "use lowercase letters, digits and _"


def read_mapping(file: Path, repo_root: Path, start_hint: str) -> tuple[dict, SourceMap]:
    display = file.relative_to(repo_root)
    data, sources = load_yaml_file(file, display)
    if not isinstance(data, dict):
        raise ConfigError([Problem(display, 1, None, "expected a mapping of settings at the top level",
                                   start_hint)])
    return data, sources


def load_layered(base: Path, overlay: Path | None, repo_root: Path,
                 start_hint: str) -> tuple[dict, SourceMap, list[Path]]:
    """Base file, then each block the overlay names replaces the base block whole (never merged)."""
    data, sources = read_mapping(base, repo_root, start_hint)
    files = [base]
    if overlay is not None and overlay.is_file():
        extra, extra_sources = read_mapping(overlay, repo_root, start_hint)
        for key, value in extra.items():
            data[key] = value
            sources.merge_block(extra_sources, key)
        files.append(overlay)
    return data, sources, files


def read_checked(model: type[BaseModel], base: Path, overlay: Path | None, repo_root: Path,
                 start_hint: str, environ: dict | None,
                 key_hint: str = DEFAULT_KEY_HINT, tolerate_unset=None) -> tuple[dict, SourceMap, list[Path]]:
    """The layered file with `${env:}` resolved, checked against `model`'s generated schema.
    Raises ConfigError listing every problem at once. `tolerate_unset(path)`: where an unset
    variable is left as written instead of being a problem (see `EnvResolver`)."""
    data, sources, files = load_layered(base, overlay, repo_root, start_hint)
    problems: list[Problem] = []
    resolver = EnvResolver(load_dotenv_values(repo_root), environ, tolerate_unset)
    data = resolver.resolve(data, sources, problems)
    problems += schema_problems(file_schema(model), data, sources, key_hint)
    if problems:
        raise ConfigError(problems)
    return data, sources, files


def build(model: type[Model], data: dict, sources: SourceMap, context: LoadContext) -> Model:
    """The typed object, built by the model from checked data. The schema comes from the same
    model, so this does not fail; should the two ever disagree, the user still gets located
    problems instead of a traceback."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            file, line = sources.locate(error["loc"])
            problems.append(Problem(file, line, format_path(error["loc"]) or None, error["msg"]))
        raise ConfigError(problems) from None


def schema_problems(schema: dict, data: dict, sources: SourceMap,
                    key_hint: str = DEFAULT_KEY_HINT) -> list[Problem]:
    from jsonschema import Draft202012Validator

    problems = []
    errors = sorted(Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        path = tuple(error.absolute_path)
        message, hint = explain(error)
        if "propertyNames" in error.relative_schema_path:  # the instance is the bad key itself
            key_path = path + (error.instance,)
            file, line = sources.locate(key_path)
            problems.append(Problem(file, line, format_path(key_path),
                                    f"invalid key {error.instance!r}", key_hint))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(k for k in error.instance if k not in allowed):
                file, line = sources.locate(path + (extra,))
                problems.append(Problem(file, line, format_path(path + (extra,)),
                                        f"unknown key {extra!r}", hint))
        else:
            field = format_path(path)
            if error.validator == "required":
                field = format_path(path + (error.message.split("'")[1],))
            file, line = sources.locate(path)
            problems.append(Problem(file, line, field or None, message, hint))
    return problems


def explain(error) -> tuple[str, str | None]:
    """jsonschema's message, plus a fix a person can apply."""
    kind = error.validator
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return error.message, f"remove or rename it; allowed keys here: {allowed}"
    if kind == "enum":
        return (f"{error.instance!r} is not allowed",
                f"use one of: {', '.join(map(str, error.validator_value))}")
    if kind == "required":
        return error.message, "add it"
    if kind == "type":
        return f"expected {error.validator_value}, got {type(error.instance).__name__}", None
    if kind == "oneOf" and isinstance(error.instance, dict) and "datasets" in error.instance:
        return ("an evaluator needs exactly one of `flow`, `code` or `kind: azure_ai_evaluation` "
                "with `class:`"), ("flow: flows/<use_case>/<eval_flow>  or  code: path/to/file.py:"
                                   "function  or  kind: azure_ai_evaluation + class: F1ScoreEvaluator")
    if kind == "pattern":
        return f"{error.instance!r} does not match {error.validator_value}", None
    if kind == "minItems":
        return "must not be empty", "add at least one entry"
    return error.message, None
