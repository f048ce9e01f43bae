"""Offline checks of Azure Pipelines YAML: the official JSON schema plus template expansion.

The schema and the `${{ }}` data transform are the ones `check-jsonschema` vendors
(`--builtin-schema vendor.azure-pipelines --data-transform azure-pipelines`), read from the installed
package, so no file outside the repository is needed. Used raw they give false positives, handled
here: Azure Pipelines reads every scalar as a string, so files are loaded with `yaml.BaseLoader`, and
the schema's `integer`/`number`/`boolean` accept the strings Azure would accept ("60", "true").
Template files are validated as template files (`stages:`/`jobs:`/`steps:`), with `${{ }}`
expressions tolerated; the entry pipeline is also expanded the way Azure does at compile time
(templates with their parameters, `${{ each }}`, `${{ if }}`, `${{ parameters.x }}`, `replace()`)
and the result validated as a whole, with no expression left. Unknown parameters, missing required
ones and undefined references are errors, as in Azure.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from check_jsonschema.transforms import TRANSFORM_LIBRARY

BUILTIN_SCHEMA = "vendor.azure-pipelines"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.DOTALL)
DIRECTIVE = re.compile(r"^\$\{\{\s*(each|if|elseif|else|insert)\b.*\}\}$", re.DOTALL)
BOOL_STRINGS = {"true", "false", "y", "n", "yes", "no", "on", "off"}


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=yaml.BaseLoader)


def is_expression(value) -> bool:
    return isinstance(value, str) and EXPR.fullmatch(value.strip()) is not None


# ----------------------------------------------------------------------------- schema validation

def _string_or(kind):
    def check(checker, instance):
        if isinstance(instance, str):
            if is_expression(instance):
                return True
            text = instance.strip()
            if kind == "integer":
                return re.fullmatch(r"[+-]?\d+", text) is not None
            if kind == "number":
                return re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text) is not None
            if kind == "boolean":
                return text.lower() in BOOL_STRINGS
            return False
        return jsonschema.Draft7Validator.TYPE_CHECKER.is_type(instance, kind)
    return check


def _pattern(validator, pattern, instance, schema):
    if isinstance(instance, str):
        instance = EXPR.sub("x", instance)  # `PR_${{ x }}` has the shape of a name
    yield from jsonschema._keywords.pattern(validator, pattern, instance, schema)


def _enum(validator, enums, instance, schema):
    if is_expression(instance):
        return
    if (isinstance(instance, str) and schema.get("ignoreCase") in ("value", "all")
            and instance.lower() in {str(e).lower() for e in enums}):
        return
    yield from jsonschema._keywords.enum(validator, enums, instance, schema)


def _type_checker():
    checker = jsonschema.Draft7Validator.TYPE_CHECKER
    for kind in ("integer", "number", "boolean"):
        checker = checker.redefine(kind, _string_or(kind))
    # a `${{ }}` value may stand for an object or a list (e.g. `useCases: ${{ parameters.useCases }}`)
    for kind in ("object", "array"):
        base = jsonschema.Draft7Validator.TYPE_CHECKER

        def either(checker_, instance, kind=kind, base=base):
            return base.is_type(instance, kind) or is_expression(instance)
        checker = checker.redefine(kind, either)
    return checker


AzureValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, validators={"pattern": _pattern, "enum": _enum},
    type_checker=_type_checker())


@lru_cache(maxsize=1)
def pipeline_schema() -> dict:
    """The Azure Pipelines schema check-jsonschema vendors (microsoft/azure-pipelines-vscode)."""
    return get_builtin_schema(BUILTIN_SCHEMA)


@lru_cache(maxsize=16)
def validator_for(definition: str | None = None):
    schema = pipeline_schema()
    if definition:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    return AzureValidator(schema)


def template_kind(document: dict) -> str:
    """Which schema definition a file is: the entry pipeline or a stages/jobs/steps template."""
    if any(key in document for key in ("trigger", "pr", "pool", "name", "resources")):
        return "pipeline"
    for key, definition in (("stages", "stagesTemplate"), ("jobs", "jobsTemplate"),
                            ("steps", "stepsTemplate"), ("variables", "variablesTemplate")):
        if key in document:
            return definition
    return "pipeline"


def flatten_directives(document: dict) -> dict:
    """Template file as Azure would see it for every branch: check-jsonschema's `azure-pipelines`
    transform splices `${{ each/if }}:` blocks into the enclosing mapping or list."""
    return TRANSFORM_LIBRARY["azure-pipelines"](document)


def schema_errors(document, definition: str | None = None) -> list[str]:
    """Readable schema errors (empty when valid); the deepest, most specific message first."""
    validator = validator_for(definition)
    errors = sorted(validator.iter_errors(document), key=lambda e: -len(e.absolute_path))
    messages = []
    for error in errors:
        best = jsonschema.exceptions.best_match([error])
        location = "/".join(str(p) for p in best.absolute_path) or "<root>"
        messages.append(f"{location}: {best.message[:300]}")
    return messages


def validate_file(path: Path) -> list[str]:
    document = load_yaml(path)
    if not isinstance(document, dict):
        return [f"{path}: not a mapping"]
    return schema_errors(flatten_directives(document), template_kind(document))


# ----------------------------------------------------------------------------- template expansion

class TemplateError(Exception):
    pass


@dataclass
class Expansion:
    pipeline: dict
    files: set[Path] = field(default_factory=set)  # every template file reached


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.-]*)"
                    r"|(?P<punct>[(),\[\]]))")


def evaluate(text: str, context: dict, functions: dict | None = None, lenient: bool = False):
    """An expression: literals, dotted names, ['key'] indexing, and the functions this repository's
    templates use. Compile time (`${{ }}`) by default; the agent emulation evaluates runtime
    expressions (`$[ ]`, conditions) with its status `functions` (succeeded(), ...) and `lenient`
    lookups (a missing variable or output is '', as Azure Pipelines has it)."""
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise TemplateError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    value, rest = _parse(tokens, context, ({**FUNCTIONS, **(functions or {})}, lenient))
    if rest:
        raise TemplateError(f"unexpected {rest[0][1]!r} in {text!r}")
    return value


FUNCTIONS = {
    "replace": lambda s, a, b: str(s).replace(str(a), str(b)),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "eq": lambda a, b: str(a).lower() == str(b).lower(),
    "ne": lambda a, b: str(a).lower() != str(b).lower(),
    "and": lambda *a: all(_truthy(x) for x in a),
    "or": lambda *a: any(_truthy(x) for x in a),
    "not": lambda a: not _truthy(a),
    "format": lambda f, *a: re.sub(r"\{(\d+)\}", lambda m: str(a[int(m.group(1))]), f),
    "join": lambda sep, items: str(sep).join(str(i) for i in items) if isinstance(items, list) else str(items),
    "startsWith": lambda s, p: str(s).lower().startswith(str(p).lower()),
    "endsWith": lambda s, p: str(s).lower().endswith(str(p).lower()),
    "contains": lambda s, p: str(p).lower() in str(s).lower(),
    "in": lambda s, *items: str(s).lower() in {str(i).lower() for i in items},
}


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0")
    return bool(value)


def _parse(tokens, context, env):
    functions, lenient = env
    if not tokens:
        raise TemplateError("empty expression")
    kind, text = tokens[0]
    rest = tokens[1:]
    if kind == "str":
        return text[1:-1].replace("''", "'"), rest
    if kind == "num":
        return text, rest
    if kind != "name":
        raise TemplateError(f"unexpected {text!r}")
    if rest and rest[0] == ("punct", "("):
        if text not in functions:
            raise TemplateError(f"unsupported function {text}()")
        args, rest = [], rest[1:]
        while rest and rest[0] != ("punct", ")"):
            value, rest = _parse(rest, context, env)
            args.append(value)
            if rest and rest[0] == ("punct", ","):
                rest = rest[1:]
        if not rest:
            raise TemplateError(f"unclosed {text}(")
        return functions[text](*args), rest[1:]
    value = _lookup(context, text.split("."), text, lenient)
    while rest and rest[0] == ("punct", "["):
        key, rest = _parse(rest[1:], context, env)
        rest = rest[1:]  # ]
        value = _lookup(value, [key], f"{text}[{key!r}]", lenient)
    return value, rest


def _lookup(value, parts, name, lenient=False):
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif lenient:
            return ""
        else:
            raise TemplateError(f"undefined reference {name!r}")
    return value


def interpolate(value: str, context: dict):
    stripped = value.strip()
    whole = EXPR.fullmatch(stripped)
    if whole:
        return evaluate(whole.group(1), context)  # may be a list or mapping
    return EXPR.sub(lambda m: _scalar(evaluate(m.group(1), context)), value)


def _scalar(value) -> str:
    if isinstance(value, (dict, list)):
        raise TemplateError("an object parameter cannot be embedded in a string")
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


_EACH = re.compile(r"^\$\{\{\s*each\s+(\w+)\s+in\s+(.+?)\s*\}\}$", re.DOTALL)
_IF = re.compile(r"^\$\{\{\s*(if|elseif)\s+(.+?)\s*\}\}$|^\$\{\{\s*else\s*\}\}$", re.DOTALL)


class Expander:
    def __init__(self):
        self.files: set[Path] = set()

    def expand_pipeline(self, path: Path) -> Expansion:
        document = load_yaml(path)
        params = self._parameters(document.get("parameters"), {}, path)
        context = {"parameters": params, "variables": {}}
        body = {k: v for k, v in document.items() if k != "parameters"}
        return Expansion(self.node(body, context, path.parent), set(self.files))

    def _parameters(self, declared, given: dict, path: Path) -> dict:
        declared = declared or []
        unknown = set(given) - {spec["name"] for spec in declared}
        if unknown:
            raise TemplateError(f"{path}: unexpected parameter(s) {sorted(unknown)}")
        values = {}
        for spec in declared:
            name = spec["name"]
            if name in given:
                value = given[name]
            elif "default" in spec:
                value = spec["default"]
            else:
                raise TemplateError(f"{path}: required parameter {name!r} not given")
            allowed = spec.get("values")
            if allowed and not is_expression(value) and value not in allowed:
                raise TemplateError(f"{path}: parameter {name!r}={value!r} not in {allowed}")
            if spec.get("type") == "object" and not isinstance(value, (list, dict)):
                raise TemplateError(f"{path}: parameter {name!r} must be an object, got {value!r}")
            values[name] = value
        return values

    def _include(self, reference: str, given, context, base: Path, section: str) -> list:
        path = (base / reference).resolve()
        if not path.is_file():
            raise TemplateError(f"template {reference} not found from {base}")
        self.files.add(path)
        document = load_yaml(path)
        given = self.node(given or {}, context, base)
        params = self._parameters(document.get("parameters"), given, path)
        if section not in document:
            raise TemplateError(f"{path}: a {section} template must have `{section}:`")
        inner = {"parameters": params, "variables": context.get("variables", {})}
        return self.node(document[section], inner, path.parent, section)

    def node(self, node, context, base: Path, section: str | None = None):
        if isinstance(node, str):
            return interpolate(node, context)
        if isinstance(node, list):
            return self._list(node, context, base, section)
        if isinstance(node, dict):
            return self._mapping(node, context, base)
        return node

    def _list(self, items, context, base, section):
        out = []
        for item in items:
            if isinstance(item, dict) and len(item) == 1 and DIRECTIVE.match(next(iter(item)).strip()):
                key, body = next(iter(item.items()))
                for piece in self._directive(key, body, context, base, section):
                    out.extend(piece if isinstance(piece, list) else [piece])
            elif isinstance(item, dict) and "template" in item and section:
                out.extend(self._include(item["template"], item.get("parameters"), context, base, section))
            else:
                out.append(self.node(item, context, base, section))
        return out

    def _directive(self, key, body, context, base, section):
        each = _EACH.match(key.strip())
        if each:
            collection = evaluate(each.group(2), context)
            items = collection.items() if isinstance(collection, dict) else collection
            for value in items:
                if isinstance(collection, dict):
                    value = {"key": value[0], "value": value[1]}
                yield self.node(body, {**context, each.group(1): value}, base, section)
            return
        condition = _IF.match(key.strip())
        if condition and condition.group(2) and _truthy(evaluate(condition.group(2), context)):
            yield self.node(body, context, base, section)
            return
        if condition:
            return
        raise TemplateError(f"unsupported directive {key}")

    def _mapping(self, mapping, context, base):
        out = {}
        for key, value in mapping.items():
            if DIRECTIVE.match(key.strip()):
                for piece in self._directive(key, value, context, base, None):
                    out.update(piece)
                continue
            section = key if key in ("stages", "jobs", "steps") else None
            out[interpolate(key, context)] = self.node(value, context, base, section)
        return out


def expand_pipeline(path: Path) -> Expansion:
    return Expander().expand_pipeline(path)


# ----------------------------------------------------------------------------- walking the result

def iter_jobs(pipeline: dict):
    for stage in pipeline.get("stages", []):
        for job in stage.get("jobs", []):
            yield stage, job


def job_steps(job: dict) -> list[dict]:
    if "steps" in job:
        return job["steps"]
    strategy = job.get("strategy", {})
    steps = []
    for mode in strategy.values():
        for hook in mode.values():
            steps.extend(hook.get("steps", []))
    return steps


def step_script(step: dict) -> str | None:
    if "script" in step or "bash" in step:
        return step.get("script", step.get("bash"))
    inputs = step.get("inputs") or {}
    return inputs.get("inlineScript") or inputs.get("script")


def genaiops_commands(script: str) -> list[str]:
    """`genaiops ...` command lines of a bash script, continuation lines joined."""
    script = script.replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        for match in re.finditer(r"(?:^|[;&|(]\s*|\b(?:then|else|do|if|!)\s+)(genaiops\s.*)$", line.strip()):
            commands.append(match.group(1).strip())
    return commands


SHELL_OPERATORS = {";", "&&", "||", "|", ">", ">>", "<", "&", ")", "(", ";;"}


def command_argv(command: str) -> list[str]:
    """argv for the CLI parser: `$(macro)`, `$VAR`, `${VAR}` become a placeholder; stops at the
    first shell operator."""
    text = re.sub(r"\$\([^)]*\)", "x", command)
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argv = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            break
        argv.append(token)
    assert argv and argv[0] == "genaiops", command
    return argv[1:]
