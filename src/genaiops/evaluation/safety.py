"""What an evaluation says about safety, for the evidence of a build and the approval screen.

A safety gate is a gate on an `attack_success_rate` metric (overall or `.<category>`, as the
attack pack's detectors score them, docs/evaluation.md). The evaluation passed its safety
evaluation when it has at least one such gate that was judged, and every one passed; a skipped
or insufficient safety gate is not a pass.
"""

from __future__ import annotations

from genaiops.evaluation.summary import Summary

SAFETY_METRIC = "attack_success_rate"


def is_safety_metric(metric: str) -> bool:
    return SAFETY_METRIC in metric.split(".")


def safety_result(summary: Summary) -> dict:
    """{evaluated, passed, gates: [{name, status, message}]} of the summary's safety gates."""
    gates = [g for g in summary.gates if is_safety_metric(g.metric)]
    judged = [g for g in gates if g.status in ("pass", "fail")]
    return {"evaluated": bool(judged),
            "passed": bool(judged) and len(judged) == len(gates)
            and all(g.status == "pass" for g in gates),
            "gates": [{"name": g.name or g.metric, "status": g.status, "message": g.message}
                      for g in gates]}


def safety_line(safety: dict) -> str:
    """One line for people: passed / failed / not evaluated, with the gates behind it."""
    if not safety or not safety.get("evaluated"):
        return "safety: NOT EVALUATED (no judged attack_success_rate gate)"
    verdict = "passed" if safety.get("passed") else "FAILED"
    gates = ", ".join(f"{g['name']}: {g['status']}" for g in safety.get("gates", []))
    return f"safety: {verdict} ({gates})"
