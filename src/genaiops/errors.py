"""Errors a user can act on. The CLI prints them as one clear message and maps them to an exit code.

Anything that is not a `GenaiopsError` is a bug in genaiops and is reported as such.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a run, a gate or a smoke test failed
EXIT_USAGE = 2  # bad command line, bad config, bad input files


class GenaiopsError(Exception):
    """Base class: a message for a person, and the exit code the CLI should use."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UsageError(GenaiopsError):
    """Wrong flags, unknown use case or variant: the user must change the command."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """One or more problems in config/data files, each naming file, line and field."""

    def __init__(self, problems: "list[Problem] | str", *, hint: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(file=None, line=None, field=None, message=problems, hint=hint)]
        self.problems = list(problems)
        lines = [p.render() for p in self.problems]
        head = "invalid configuration" if len(lines) == 1 else f"{len(lines)} configuration problems"
        super().__init__(head + ":\n" + "\n".join(f"  - {line}" for line in lines))

    def __str__(self) -> str:
        return self.message


class RunFailed(GenaiopsError):
    """A phase ran but its result is a failure (failed lines, failed gate, failed smoke test)."""

    exit_code = EXIT_FAILED


class Problem:
    """One validation problem, located as precisely as we can."""

    __slots__ = ("file", "line", "field", "message", "hint")

    def __init__(self, file, line, field, message, hint=None):
        self.file, self.line, self.field, self.message, self.hint = file, line, field, message, hint

    def location(self) -> str:
        where = str(self.file) if self.file else ""
        if self.file and self.line:
            where += f":{self.line}"
        if self.field:
            where += (": " if where else "") + self.field
        return where

    def render(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} (fix: {self.hint})" if self.hint else text

    def as_dict(self) -> dict:
        return {
            "file": str(self.file) if self.file else None,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }

    def __repr__(self) -> str:
        return f"Problem({self.render()!r})"
