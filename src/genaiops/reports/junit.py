"""junit.xml: one test case per gate (plus one for the evaluation runs themselves), for Azure
DevOps PublishTestResults@2 (testResultsFormat: JUnit). Skipped = not enough samples / no baseline."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def render_junit(summary: dict) -> str:
    gates = summary.get("gates", [])
    problems = summary.get("problems", [])
    suite = ET.Element("testsuite", name=f"genaiops.evaluate.{summary['use_case']}",
                       timestamp=summary.get("created_at", ""), time=str(summary.get("duration_s") or 0))
    failures = skipped = 0
    case = ET.SubElement(suite, "testcase", classname=f"genaiops.{summary['use_case']}.evaluation",
                         name="evaluation runs completed")
    blocking = list(problems)
    if blocking:
        failures += 1
        ET.SubElement(case, "failure", message=blocking[0][:500], type="EvaluationFailed").text = "\n".join(blocking)
    for gate in gates:
        case = ET.SubElement(suite, "testcase", classname=f"genaiops.{summary['use_case']}.gates",
                             name=gate["name"])
        if gate["status"] == "fail":
            failures += 1
            ET.SubElement(case, "failure", message=gate["message"][:500], type="GateFailed").text = gate["message"]
        elif gate["status"] in ("insufficient", "skipped"):
            skipped += 1
            ET.SubElement(case, "skipped", message=gate["message"][:500])
        else:
            ET.SubElement(case, "system-out").text = gate["message"]
    suite.set("tests", str(len(gates) + 1))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites", name="genaiops evaluate", tests=suite.get("tests"),
                      failures=str(failures), errors="0", skipped=str(skipped))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
