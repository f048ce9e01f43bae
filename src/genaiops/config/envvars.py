"""`${env:VAR}` and `${env:VAR:-default}` references, resolved from the environment, then `.env`.

Values from the real environment win over `.env` (what CI variable groups expect). A missing
variable without a default is a problem naming the variable, the file and the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genaiops.config.yamlsrc import SourceMap, format_path
from genaiops.errors import Problem

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
UNSET = "environment variable {name} is not set"
_UNSET = re.compile("^" + re.escape(UNSET).replace(re.escape("{name}"), r"(?P<name>\w+)") + "$")


def unset_variable(problem: Problem) -> str | None:
    """The variable a problem says is not set, or None for any other problem."""
    match = _UNSET.match(problem.message or "")
    return match.group("name") if match else None
MALFORMED_REF = re.compile(r"\$\{env:(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})[^}]*\}?")


def load_dotenv_values(repo_root: Path) -> dict[str, str]:
    """The `.env` next to the repo root (or `$GENAIOPS_DOTENV`), without touching os.environ."""
    from dotenv import dotenv_values

    path = Path(os.environ.get("GENAIOPS_DOTENV", repo_root / ".env"))
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


class EnvResolver:
    """Resolves references in a config tree; remembers which values came from variables."""

    def __init__(self, dotenv: dict[str, str], environ: dict[str, str] | None = None,
                 tolerate_unset=None):
        """`tolerate_unset(path) -> bool`: a part of the tree not used now (another deployment
        environment), where an unset variable without default stays `${env:NAME}` as written."""
        self.dotenv = dotenv
        self.environ = os.environ if environ is None else environ
        self.tolerate_unset = tolerate_unset or (lambda path: False)
        self.used: set[str] = set()

    def lookup(self, name: str) -> str | None:
        if name in self.environ:
            return self.environ[name]
        return self.dotenv.get(name)

    def resolve(self, tree, sources: SourceMap, problems: list[Problem], path=()):
        if isinstance(tree, dict):
            return {k: self.resolve(v, sources, problems, path + (k,)) for k, v in tree.items()}
        if isinstance(tree, list):
            return [self.resolve(v, sources, problems, path + (i,)) for i, v in enumerate(tree)]
        if not isinstance(tree, str) or "${env:" not in tree:
            return tree
        bad = MALFORMED_REF.search(tree)
        if bad:
            file, line = sources.locate(path)
            problems.append(Problem(file, line, format_path(path),
                                    f"malformed reference {bad.group(0)!r}",
                                    "write ${env:NAME} or ${env:NAME:-default}"))
            return tree

        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            self.used.add(name)
            value = self.lookup(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                if self.tolerate_unset(path):
                    return match.group(0)
                file, line = sources.locate(path)
                problems.append(Problem(file, line, format_path(path), UNSET.format(name=name),
                                        f"set {name} in the environment or in .env "
                                        f"(see .env.example), or give a default: ${{env:{name}:-value}}"))
                return ""
            return value

        return ENV_REF.sub(substitute, tree)
