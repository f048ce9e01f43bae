"""Builds small, valid flow repositories in a temp dir for tests that change one thing at a time."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

STANDARD_DAG = """\
inputs:
  text: {type: string}
outputs:
  category: {type: string, reference: "${normalize.output}"}
nodes:
  - name: normalize
    type: python
    source: {type: code, path: normalize.py}
    inputs: {text: "${inputs.text}"}
"""

EVAL_DAG = """\
inputs:
  groundtruth: {type: string}
  prediction: {type: string}
outputs:
  score: {type: string, reference: "${grade.output}"}
nodes:
  - name: grade
    type: python
    source: {type: code, path: grade.py}
    inputs: {groundtruth: "${inputs.groundtruth}", prediction: "${inputs.prediction}"}
"""

CONFIG = """\
name: demo
description: a tiny use case for tests
flow: flows/demo/standard
connections:
  - name: llm
    type: open_ai
    api_base: simulator
    api_key: ${env:DEMO_KEY:-simulator-key}
datasets:
  - name: rows
    source: datasets/demo/rows.jsonl
    mappings:
      text: ${data.text}
evaluators:
  - name: exact
    flow: flows/demo/evaluation
    datasets:
      - name: rows_eval
        reference: rows
        mappings:
          groundtruth: ${data.label}
          prediction: ${run.outputs.category}
gates:
  - {metric: accuracy, op: ">=", threshold: 0.5}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


PYTHON_GRADE = """\
def grade(groundtruth, prediction):
    return {"score": "correct" if groundtruth == prediction else "wrong"}
"""


def make_repo(root: Path, config: str = CONFIG, engine: str = "promptflow") -> Path:
    """The demo use case; `engine="python"` writes its flows as plain functions (the python
    engine: a worker starts in a fraction of a second, for tests about phases, not promptflow)."""
    if engine == "python":
        write(root / "flows/demo/evaluation/grade.py", PYTHON_GRADE)
        write(root / "flows/demo/standard/normalize.py", _python_normalize("return text.strip().lower()\n"))
        config = config.replace("flow: flows/demo/standard\n", "engine: python\n"
                                "flow: flows/demo/standard/normalize.py:normalize\n")
        config = config.replace("    flow: flows/demo/evaluation\n",
                                "    flow: flows/demo/evaluation/grade.py:grade\n")
        return _data_and_config(root, config)
    write(root / "flows/demo/standard/flow.dag.yaml", STANDARD_DAG)
    write(root / "flows/demo/standard/normalize.py",
          "from promptflow.core import tool\n\n\n@tool\ndef normalize(text: str) -> str:\n"
          "    return text.strip().lower()\n")
    write(root / "flows/demo/evaluation/flow.dag.yaml", EVAL_DAG)
    write(root / "flows/demo/evaluation/grade.py",
          "from promptflow.core import tool\n\n\n@tool\ndef grade(groundtruth: str, prediction: str) -> str:\n"
          "    return 'correct' if groundtruth == prediction else 'wrong'\n")
    return _data_and_config(root, config)


def _data_and_config(root: Path, config: str) -> Path:
    rows = [{"text": "Refund please", "label": "refund please"}, {"text": "Hi", "label": "hi"}]
    write(root / "datasets/demo/rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(root / "configs/demo/experiment.yaml", config)
    return root


def use_code_evaluator(root: Path, file: str, code: str, evaluation: str, gates: str = "[]") -> None:
    """Replace the demo's flow evaluator by the code evaluator `file` (`score` + `summarize`)."""
    config = (root / "configs/demo/experiment.yaml").read_text()
    config = re.sub(r"    flow: flows/demo/evaluation\S*\n",
                    f"    code: {file}:score\n    aggregate: summarize\n", config)
    config = config.replace('gates:\n  - {metric: accuracy, op: ">=", threshold: 0.5}',
                            f"evaluation: {evaluation}\ngates: {gates}")
    write(root / "configs/demo/experiment.yaml", config)
    write(root / file, code)


def _python_normalize(body: str) -> str:
    return ("def _normalize(text):\n" + textwrap.indent(textwrap.dedent(body), "    ")
            + "\n\ndef normalize(text):\n    return {'category': _normalize(text)}\n")


def write_normalize(root: Path, body: str) -> None:
    """The demo flow's only node, `normalize(text: str) -> str`, with `body` (indented 4)."""
    if not (root / "flows/demo/standard/flow.dag.yaml").exists():  # the python engine's demo
        write(root / "flows/demo/standard/normalize.py", _python_normalize(body))
        return
    write(root / "flows/demo/standard/normalize.py",
          "from promptflow.core import tool\n\n\n@tool\ndef normalize(text: str) -> str:\n"
          + textwrap.indent(textwrap.dedent(body), "    "))


LLM_FLOW = """\
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${ask.output}"}
nodes:
  - name: ask
    type: llm
    source: {type: code, path: ask.jinja2}
    inputs:
      model: gpt-4o-mini
      deployment_name: gpt-4o-mini
      max_tokens: 16
      question: ${inputs.question}
    connection: open_ai_connection
    api: chat
"""

SCORE_DAG = """\
inputs:
  groundtruth: {type: string}
  prediction: {type: string}
outputs:
  accuracy: {type: double, reference: "${grade.output}"}
nodes:
  - name: grade
    type: python
    source: {type: code, path: grade.py}
    inputs: {groundtruth: "${inputs.groundtruth}", prediction: "${inputs.prediction}"}
"""

LLM_CONFIG = """\
name: {name}
flow: flows/{name}/standard
connections:
  - name: open_ai_connection
    type: open_ai
    api_base: simulator
    api_key: simulator-key
simulator:
  rules: configs/{name}/simulator.yaml
datasets:
  - name: rows
    source: datasets/{name}/rows.jsonl
    mappings:
      question: ${{data.question}}
evaluators:
  - name: exact
    flow: flows/{name}/evaluation
    datasets:
      - name: rows_eval
        reference: rows
        mappings:
          groundtruth: ${{data.label}}
          prediction: ${{run.outputs.answer}}
runtime:
  worker_count: 2
evaluation: {{primary_metric: accuracy}}
gates:
  - {{metric: accuracy, op: ">=", threshold: 1.0}}
"""


def make_llm_use_case(root: Path, name: str, answer: str) -> None:
    """Use case `name`: a one-LLM-node DAG on connection `open_ai_connection` whose simulator
    answers `answer` to everything, an evaluator scoring 1.0 for that answer, a gate at 1.0."""
    write(root / f"flows/{name}/standard/flow.dag.yaml", LLM_FLOW)
    write(root / f"flows/{name}/standard/ask.jinja2", "# system:\nAnswer briefly.\n# user:\n{{question}}\n")
    write(root / f"flows/{name}/evaluation/flow.dag.yaml", SCORE_DAG)
    write(root / f"flows/{name}/evaluation/grade.py",
          "from promptflow.core import tool\n\n\n@tool\ndef grade(groundtruth: str, prediction: str) -> float:\n"
          "    return 1.0 if groundtruth == prediction else 0.0\n")
    write(root / f"configs/{name}/simulator.yaml", f"default_reply: {answer}\n")
    write(root / f"configs/{name}/experiment.yaml", LLM_CONFIG.format(name=name))
    rows = [{"question": f"question {i} of {name}", "label": answer} for i in range(4)]
    write(root / f"datasets/{name}/rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
