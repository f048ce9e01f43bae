"""junit.xml: one test case per gate (plus one for the evaluation runs themselves), for Azure
DevOps PublishTestResults@2 (testResultsFormat: JUnit).
Skipped = not enough samples / no baseline."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from genaiops.evaluation.summary import Summary


def render_junit(summary: Summary) -> str:
    gates, problems = summary.gates, summary.problems
    suite = ET.Element("testsuite", name=f"genaiops.evaluate.{summary.use_case}",
                       timestamp=summary.created_at, time=str(summary.duration_s or 0))
    properties = ET.SubElement(suite, "properties")  # what was evaluated
    for name, value in (("experiment", summary.experiment_id), ("flow_hash", summary.flow_hash),
                        ("checkout_changes", "; ".join(summary.checkout_changes or ()))):
        if value:
            ET.SubElement(properties, "property", name=name, value=value)
    failures = skipped = 0
    case = ET.SubElement(suite, "testcase", classname=f"genaiops.{summary.use_case}.evaluation",
                         name="evaluation runs completed")
    if problems:
        failures += 1
        failure = ET.SubElement(case, "failure", message=problems[0][:500], type="EvaluationFailed")
        failure.text = "\n".join(problems)
    for gate in gates:
        case = ET.SubElement(suite, "testcase", classname=f"genaiops.{summary.use_case}.gates",
                             name=gate.name)
        if gate.status == "fail":
            failures += 1
            failure = ET.SubElement(case, "failure", message=gate.message[:500], type="GateFailed")
            failure.text = gate.message
        elif gate.status in ("insufficient", "skipped"):
            skipped += 1
            ET.SubElement(case, "skipped", message=gate.message[:500])
        else:
            ET.SubElement(case, "system-out").text = gate.message
    suite.set("tests", str(len(gates) + 1))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites", name="genaiops evaluate", tests=suite.get("tests"),
                      failures=str(failures), errors="0", skipped=str(skipped))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
