"""Where a metric comes from: `builtin.<name>` (operational metrics of the experiment run) or
`<evaluator>.<name>` (what an evaluator scored or reported).

A gate or `evaluation.primary_metric` may name a metric bare (`accuracy`) as long as only one
source reports it; when several do (an evaluator that logs its own `error_rate` next to the
built-in one), the bare name is ambiguous and judging it would be a guess. Config validation
and evaluation share these rules so both read a name the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BUILTIN = "builtin"  # the source of the operational metrics taken from the run ledger
BUILTIN_METRICS = ("error_rate", "latency_p50_s", "latency_p95_s", "latency_p99_s",
                   "total_tokens", "tokens_per_line", "cost")


@dataclass(frozen=True)
class MetricRef:
    """A metric as a gate names it: `source` is `builtin`, an evaluator name, or None (bare)."""

    source: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.source}.{self.name}" if self.source else self.name


def parse_metric(metric: str, evaluators: Iterable[str], evaluator: str | None = None) -> MetricRef:
    """`builtin.x` and `<evaluator>.x` (the longest evaluator name that prefixes it) are namespaced;
    anything else is bare. With an explicit `evaluator`, the metric is that evaluator's, verbatim."""
    if evaluator:
        own = evaluator + "."
        return MetricRef(evaluator, metric[len(own):] if metric.startswith(own) else metric)
    prefix, dot, rest = metric.partition(".")
    if dot and prefix == BUILTIN and rest:
        return MetricRef(BUILTIN, rest)
    for name in sorted(evaluators, key=len, reverse=True):
        if metric.startswith(name + ".") and len(metric) > len(name) + 1:
            return MetricRef(name, metric[len(name) + 1:])
    return MetricRef(None, metric)


def namespace_problem(metric: str, evaluators: Iterable[str],
                      evaluator: str | None = None) -> tuple[str, str] | None:
    """(message, fix) when a metric name cannot refer to anything this use case reports."""
    evaluators = list(evaluators)
    ref = parse_metric(metric, evaluators)
    if evaluator and ref.source and ref.source != evaluator:
        return (f"names evaluator {evaluator!r} but its metric is {metric}",
                f"drop `evaluator:` or write metric: {evaluator}.{ref.name}")
    if ref.source == BUILTIN and ref.name not in BUILTIN_METRICS:
        return (f"{ref.name!r} is not a built-in metric",
                f"built-in metrics: {', '.join(BUILTIN_METRICS)}")
    if ref.source is None and "." in metric and not evaluator:
        prefix = metric.split(".", 1)[0]
        return (f"{prefix!r} is neither `builtin` nor an evaluator of this use case",
                f"write builtin.<metric> or <evaluator>.<metric> (evaluators: "
                f"{', '.join(evaluators) or 'none'}), or set `evaluator:` to gate a dotted name")
    return None


def ambiguity(metric: str, reported: dict[str, set[str]], evaluator: str | None = None) -> str | None:
    """Why a metric name is ambiguous given what each source is known to report (`builtin` and
    the outputs evaluator flows declare), or None."""
    ref = parse_metric(metric, [s for s in reported if s != BUILTIN], evaluator)
    if ref.source is not None:
        return None
    sources = [source for source, names in reported.items() if ref.name in names]
    if len(sources) < 2:
        return None
    return (f"{metric!r} is ambiguous: reported by {' and '.join(sources)}; write "
            + " or ".join(f"{source}.{ref.name}" for source in sources))
