"""Fast unit tests (no promptflow run) of the promptflow engine's staging, composite DAGs and retry
patch, and of the shared progress display and scheduling loop."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import types

import pytest
import yaml

from genaiops.engines.base import VariantSpec
from genaiops.engines.promptflow import retry_policy
from genaiops.engines.promptflow.composite import composite_dag, output_name
from genaiops.engines.promptflow.flowspec import read_flow
from genaiops.engines.promptflow.staging import stage_batch, stage_for_serving
from genaiops.execution.progress import Progress
from genaiops.execution.scheduling import Unit, run_concurrently

DAG = {
    "inputs": {"text": {"type": "string"}},
    "outputs": {"category": {"type": "string", "reference": "${classify.output}"}},
    "nodes": [
        {"name": "summarize", "use_variants": True},
        {"name": "classify", "use_variants": True},
        {"name": "normalize", "type": "python", "source": {"type": "code", "path": "n.py"},
         "inputs": {"text": "${classify.output}", "original": "${inputs.text}"}},
    ],
    "node_variants": {
        "summarize": {"default_variant_id": "full", "variants": {
            "full": {"node": {"type": "llm", "inputs": {"text": "${inputs.text}"}}},
            "brief": {"node": {"type": "llm", "inputs": {"text": "${inputs.text}", "max_tokens": 5}}}}},
        "classify": {"default_variant_id": "careful", "variants": {
            "careful": {"node": {"type": "llm", "inputs": {"summary": "${summarize.output}"}}},
            "terse": {"node": {"type": "llm", "inputs": {"summary": "${summarize.output}", "t": 0.7}}}}},
    },
}


def test_composite_dag_gives_each_variant_its_own_renamed_chain():
    staged = composite_dag(DAG, [{"summarize": "full", "classify": "careful"},
                                 {"summarize": "brief", "classify": "terse"}])
    names = [n["name"] for n in staged["nodes"]]
    assert names == ["summarize__v0", "classify__v0", "normalize__v0",
                     "summarize__v1", "classify__v1", "normalize__v1"]
    nodes = {n["name"]: n for n in staged["nodes"]}
    assert nodes["classify__v1"]["inputs"] == {"summary": "${summarize__v1.output}", "t": 0.7}
    assert nodes["summarize__v1"]["inputs"]["max_tokens"] == 5  # the chosen variant's node body
    assert nodes["normalize__v0"]["inputs"] == {"text": "${classify__v0.output}",
                                                "original": "${inputs.text}"}  # flow inputs untouched
    assert staged["outputs"] == {"category__v0": {"type": "string", "reference": "${classify__v0.output}"},
                                 "category__v1": {"type": "string", "reference": "${classify__v1.output}"}}
    assert "node_variants" not in staged and all("use_variants" not in n for n in staged["nodes"])
    assert output_name("category", 1) == "category__v1"


def _dag_flow(tmp_path):
    root = tmp_path / "flow"
    root.mkdir()
    (root / "flow.dag.yaml").write_text(yaml.safe_dump(DAG, sort_keys=False))
    (root / "n.py").write_text("x = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "n.cpython-311.pyc").write_bytes(b"junk")
    return read_flow(root)


def test_stage_batch_of_dag_variants_is_one_composite_copy(tmp_path):
    flow = _dag_flow(tmp_path)
    variants = [VariantSpec("a", {"summarize": "full", "classify": "careful"}),
                VariantSpec("b", {"summarize": "brief", "classify": "careful"})]
    staged = stage_batch(flow, variants, tmp_path / "staged")
    assert staged.member_suffixes == ["__v0", "__v1"] and staged.init is None
    assert (tmp_path / "staged" / "n.py").is_file()
    assert not (tmp_path / "staged" / "__pycache__").exists()  # caches are not copied
    assert set(yaml.safe_load((tmp_path / "staged" / "flow.dag.yaml").read_text())["outputs"]) == {
        "category__v0", "category__v1"}
    assert (flow.root / "flow.dag.yaml").read_text() == yaml.safe_dump(DAG, sort_keys=False)  # the repo's flow is untouched


def test_prompty_variant_is_a_copy_with_its_front_matter_changed(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "ask.prompty").write_text("---\nname: ask\nmodel:\n  parameters:\n    temperature: 0.0\n"
                                      "    max_tokens: 10\n---\nsystem:\nAnswer {{question}}\n")
    flow = read_flow(root / "ask.prompty")
    variant = VariantSpec("hot", init={"model": {"parameters": {"temperature": 0.9}}})
    staged = stage_batch(flow, [variant], tmp_path / "staged")
    assert staged.entry == str(tmp_path / "staged" / "ask.prompty")
    assert staged.environment == {}  # forked line workers: genaiops renews promptflow's store locks
    front = yaml.safe_load((tmp_path / "staged" / "ask.prompty").read_text().split("---")[1])
    assert front["model"]["parameters"] == {"temperature": 0.9, "max_tokens": 10}
    assert "Answer {{question}}" in (tmp_path / "staged" / "ask.prompty").read_text()
    served = stage_for_serving(flow, variant, tmp_path / "served")
    assert "temperature: 0.9" in (served / "ask.prompty").read_text()
    with pytest.raises(ValueError):
        stage_batch(flow, [variant] * 9, tmp_path / "nine")  # at most 8 variants a batch


def test_serving_copy_of_a_dag_makes_the_variant_the_default(tmp_path):
    flow = _dag_flow(tmp_path)
    served = stage_for_serving(flow, VariantSpec("b", {"summarize": "brief", "classify": "terse"}),
                               tmp_path / "served")
    assert read_flow(served).node_variants == {"summarize": ("brief", ("full", "brief")),
                                               "classify": ("terse", ("careful", "terse"))}


# -- the retry patch ----------------------------------------------------------------------------

def _retrying_call(module, retry_after: float, tries: int = 100) -> int:
    """handle_openai_error's shape: retry index `i`, `time.sleep` in the except block."""
    calls = 0
    for i in range(tries + 1):  # noqa: B007 - `i` is what the policy reads
        try:
            calls += 1
            raise ConnectionError("HTTP 429 from the endpoint")
        except ConnectionError:
            module.time.sleep(retry_after)
    return calls


def test_retries_stop_at_max_attempts_even_with_retry_after():
    module = types.SimpleNamespace(time=time)
    retry_policy._patch(module, retry_policy.RetryPolicy(3, 0.5, 60))
    assert [module.generate_retry_interval(n) for n in (0, 1, 10)] == [0.5, 1.0, 30.0]
    with pytest.raises(retry_policy.RetriesExhausted, match=r"gave up after 3 attempt\(s\): "
                                                             r"ConnectionError: HTTP 429") as info:
        _retrying_call(module, retry_after=0.01)
    assert isinstance(info.value.__cause__, ConnectionError)


def test_retries_stop_before_passing_max_total_sec():
    module = types.SimpleNamespace(time=time)
    retry_policy._patch(module, retry_policy.RetryPolicy(100, 0.5, 0.3))
    started = time.monotonic()
    with pytest.raises(retry_policy.RetriesExhausted, match="max_total_sec 0.3"):
        _retrying_call(module, retry_after=0.1)
    assert time.monotonic() - started < 0.35


def test_async_retries_are_bounded_too():
    import asyncio

    module = types.SimpleNamespace(asyncio=asyncio)
    retry_policy._patch(module, retry_policy.RetryPolicy(2, 0.5, 60))

    async def call():
        for i in range(11):  # noqa: B007
            try:
                raise ConnectionError("HTTP 429")
            except ConnectionError:
                await module.asyncio.sleep(0.01)

    with pytest.raises(retry_policy.RetriesExhausted, match=r"after 2 attempt"):
        asyncio.run(call())


@pytest.mark.parametrize("target", retry_policy.TARGETS)
def test_promptflows_retry_decorators_have_the_shape_the_policy_reads(target):
    """If a promptflow upgrade renames the retry index or stops sleeping through `time`/`asyncio`,
    this fails instead of the limits silently not applying."""
    import importlib
    import inspect

    module = importlib.import_module(target)
    source = inspect.getsource(module.handle_openai_error)
    assert f"for {retry_policy.RETRY_INDEX} in range(tries + 1):" in source
    assert "time.sleep(retry_after_seconds)" in source
    if hasattr(module, "handle_openai_error_async"):
        assert "await asyncio.sleep(retry_after_seconds)" in inspect.getsource(
            module.handle_openai_error_async)


def test_behind_the_gateway_one_attempt_gives_the_gateways_own_error():
    """max_attempts 1 (the gateway retried already): the first failure is raised as it came, with
    the gateway's account of what it tried, not wrapped in a second account."""
    module = types.SimpleNamespace(time=time)
    retry_policy._patch(module, retry_policy.RetryPolicy(1, 0, 60))
    with pytest.raises(ConnectionError, match="HTTP 429 from the endpoint"):
        _retrying_call(module, retry_after=0)


def test_a_warm_workers_next_job_gets_its_own_policy():
    module = types.SimpleNamespace(time=time)
    retry_policy._patch(module, retry_policy.RetryPolicy(100, 0.5, 60))
    retry_policy._patch(module, retry_policy.RetryPolicy(2, 0.5, 60))  # the next job's settings
    with pytest.raises(retry_policy.RetriesExhausted, match=r"after 2 attempt"):
        _retrying_call(module, retry_after=0)


def test_both_promptflow_retry_loops_are_patched():
    assert retry_policy.TARGETS == ("promptflow.tools.common", "promptflow.core._prompty_utils")
    import promptflow.core._prompty_utils as prompty
    import promptflow.tools.common as tools

    for module in (prompty, tools):  # the names the retry loops look up at call time
        assert callable(module.generate_retry_interval)


def test_patch_applies_when_the_tools_module_is_imported_later(tmp_path, monkeypatch):
    module = "genaiops_fake_tools_common"
    (tmp_path / f"{module}.py").write_text("import time\n\ndef generate_retry_interval(n):\n    return 99\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(retry_policy, "TARGETS", (module,))
    monkeypatch.setenv(retry_policy.ENV_ATTEMPTS, "2")
    monkeypatch.setenv(retry_policy.ENV_BACKOFF, "0.25")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    retry_policy.install_from_env()
    imported = __import__(module)
    assert imported.generate_retry_interval(0) == 0.25  # ours, not the module's 99
    assert isinstance(imported.time, retry_policy._Module)
    assert not any(isinstance(f, retry_policy._PatchOnImport) for f in sys.meta_path)  # one-shot


def test_no_policy_without_the_environment(monkeypatch):
    monkeypatch.delenv(retry_policy.ENV_ATTEMPTS, raising=False)
    before = list(sys.meta_path)
    retry_policy.install_from_env()
    assert sys.meta_path == before


# -- progress and the scheduling loop ---------------------------------------------------------------

def test_progress_in_a_log_prints_quarters_only():
    stream = io.StringIO()
    progress = Progress(8, "experiment x", stream=stream)
    progress.add_task("a", 4)
    progress.add_task("b", 4)
    for done in range(1, 5):
        progress.update("a", done)
    progress.update("b", 9)  # clamped to the task's size
    lines = [line.split(" after ")[0] for line in stream.getvalue().splitlines()]
    assert lines == ["experiment x: 1/8 lines (12%)", "experiment x: 2/8 lines (25%)",
                     "experiment x: 4/8 lines (50%)", "experiment x: 8/8 lines (100%)"]
    quiet = io.StringIO()
    Progress(1, "q", stream=quiet, enabled=False).update("a", 1)
    assert quiet.getvalue() == ""


def test_progress_on_a_terminal_redraws_one_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress(2, "evaluate", stream=stream)
    progress.add_task("e1", 2)
    progress.update("e1", 1)
    progress.update("e1", 2)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and "[###############---------------] 1/2" in text
    assert text.endswith("\n")


def test_run_concurrently_keeps_order_bounds_parallelism_and_propagates_errors():
    running, peak, lock = 0, 0, threading.Lock()

    def work(item, report):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05 * (3 - item % 3))
        report(1)
        with lock:
            running -= 1
        return item * 10

    units = [Unit(i, "same label") for i in range(6)]
    assert run_concurrently(units, work, max_parallel=2, title="t", show_progress=False) == \
        [0, 10, 20, 30, 40, 50]
    assert peak == 2

    def failing(item, report):
        if item == 1:
            raise RuntimeError("unit 1 broke")
        return item

    with pytest.raises(RuntimeError, match="unit 1 broke"):
        run_concurrently([Unit(i, f"u{i}") for i in range(3)], failing, max_parallel=3, title="t",
                         show_progress=False)
    assert run_concurrently([], work, max_parallel=2, title="t") == []


# -- worker counts ----------------------------------------------------------------------------------

def test_auto_worker_count_follows_lines_cores_memory_and_quota():
    from genaiops.execution.capacity import auto_workers, worker_count

    assert auto_workers(10, calls_llm=True, cores=2, memory_mb=10_000) == 10  # no more than lines
    assert auto_workers(500, calls_llm=True, cores=2, memory_mb=10_000) == 16  # LLM-bound: waits
    assert auto_workers(500, calls_llm=False, cores=2, memory_mb=10_000) == 2  # CPU-bound: cores
    assert auto_workers(500, calls_llm=None, cores=2, memory_mb=10_000) == 16  # unknown: LLM-bound
    assert auto_workers(500, calls_llm=True, quota_rps=10, cores=2, memory_mb=10_000) == 20
    assert auto_workers(500, calls_llm=True, quota_rps=1000, cores=2, memory_mb=100_000) == 64
    assert auto_workers(500, calls_llm=True, cores=2, memory_mb=600) == 3  # half of 600 MB / 100
    assert worker_count(4, 2, calls_llm=True) == 2 and worker_count(4, 50, calls_llm=True) == 4


def test_parallel_runs_default_to_half_the_cores_unless_asked():
    from genaiops.execution.capacity import parallel_runs

    assert parallel_runs(None, 4, 6, cores=2) == 1  # a second engine worker costs more than it saves
    assert parallel_runs(None, 4, 6, cores=8) == 4 and parallel_runs(None, 4, 2, cores=8) == 2
    assert parallel_runs(3, 4, 6, cores=2) == 3  # --max-parallel is taken as given


def test_flowspec_knows_which_dag_flows_call_an_llm(repo_root):
    assert read_flow(repo_root / "flows/classification/standard").calls_llm is True
    assert read_flow(repo_root / "flows/classification/evaluation").calls_llm is False
    assert read_flow(repo_root / "flows/qa/standard").calls_llm is None  # flex: cannot tell


@pytest.mark.promptflow
def test_workers_starting_together_never_race_on_pf_yaml(tmp_path):
    """promptflow writes cli.installation_id into pf.yaml on first use, not atomically; genaiops
    writes the complete file first, so workers starting at once in a new HOME only read it."""
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(tmp_path), "GENAIOPS_ENGINE_HOME": str(tmp_path)}  # a worker's
    subprocess.run([sys.executable, "-c", "from genaiops.engines.promptflow.env import "
                    "prepare_promptflow; prepare_promptflow()"], env=env, check=True)
    written = (tmp_path / ".promptflow/pf.yaml").read_text()
    assert yaml.safe_load(written)["cli"]["installation_id"]
    subprocess.run([sys.executable, "-c", "from promptflow._sdk._configuration import Configuration; "
                    "Configuration.get_instance().get_or_set_installation_id()"], env=env, check=True)
    assert (tmp_path / ".promptflow/pf.yaml").read_text() == written  # promptflow wrote nothing
