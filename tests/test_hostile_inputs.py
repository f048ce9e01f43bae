"""Hostile and odd inputs end at `genaiops validate` (before any LLM call) in a located message and
exit 2 - never a traceback or "internal error" (issues 19 and 20). Everything runs through the CLI
on a temp copy of the sample repository."""

from __future__ import annotations

import json
import random
import time

import pytest
from deploy_helpers import copy_use_case
from repo_factory import make_repo

from genaiops.cli import main

DATASET = "datasets/classification/tickets.jsonl"
DEPLOYMENT = "configs/classification/deployment.yaml"


@pytest.fixture
def repo(tmp_path, monkeypatch, state_dir):
    monkeypatch.chdir(tmp_path)
    for name in ("LLM_API_TYPE", "LLM_API_BASE", "LLM_API_KEY", "LLM_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return copy_use_case(tmp_path / "repo", "classification")


def away_from_the_simulator(monkeypatch) -> None:
    """`run init` stores the `llm` connection in the session's promptflow home: at an endpoint of
    its own, so that tests after these still see their connection created or updated."""
    monkeypatch.setenv("LLM_API_BASE", "http://127.0.0.1:9/hostile-inputs/v1")


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def validate(repo, capsys, *extra) -> tuple[int, str]:
    return run(capsys, "--repo", str(repo), "validate", "--use-case", "classification", *extra)


def assert_clean(code: int, output: str) -> None:
    assert code in (0, 2), output
    assert "internal error" not in output and "Traceback" not in output, output


def append_row(repo, raw: bytes) -> int:
    """`raw` as the dataset's last line; its line number."""
    path = repo / DATASET
    data = path.read_bytes()
    path.write_bytes(data + raw + b"\n")
    return data.count(b"\n") + 1


# -- 1, 2: rows the later phases cannot write back out ------------------------------------------

def test_lone_surrogate_in_a_row_is_refused_at_validate(repo, capsys):
    """JSON "\\ud800" parses into a str no UTF-8 file can hold: evaluate used to crash in
    write_reports after every LLM call was made."""
    line = append_row(repo, b'{"text": "refund \\ud800 now", "label": "billing"}')
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert f"{DATASET}:{line}: column 'text' holds a lone surrogate" in output
    assert "internal error" not in output
    code, output = run(capsys, "--repo", str(repo), "run", "init", "-u", "classification",
                       "--no-progress")
    assert code == 2 and f"{DATASET}:{line}" in output, output


def test_row_nested_50000_deep_is_a_located_problem(repo, capsys):
    deep = b"[" * 50_000 + b"]" * 50_000
    line = append_row(repo, b'{"text": ' + deep + b', "label": "billing"}')
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert f"{DATASET}:{line}: nested too deeply" in output
    assert "RecursionError" not in output and "internal error" not in output


# -- the fuzz: 1,000 generated malformed rows ---------------------------------------------------

GOOD = {"text": "My invoice is wrong", "label": "billing"}


def _row(**change) -> bytes:
    return json.dumps({**GOOD, **change}).encode()


READ, COLUMN = "read", "column"  # refused when read; refused when the file reads (mapping checks)


ODD_BUT_VALID = (9, 10, 11, 12, 13)


def _fuzzed(rng: random.Random, kinds=range(16)) -> tuple[bytes, str | bool]:
    """One generated line and whether validate must refuse it: READ, COLUMN, False (may pass)."""
    kind = rng.choice(kinds)
    good = _row()
    if kind == 0:  # truncated or damaged JSON
        cut = rng.randrange(1, len(good) - 1)
        return rng.choice([good[:cut], good[:cut] + b"}", good.replace(b'"', b"'"),
                           good[:-1] + b",}", b"{" + good]), READ
    if kind == 1:  # lone surrogates, escaped
        surrogate = rng.choice([0xD800, 0xDBFF, 0xDC00, 0xDFFF, rng.randrange(0xD800, 0xE000)])
        return _row(text=f"x\\u{surrogate:04x}y").replace(b"\\\\u", b"\\u"), READ
    if kind == 2:  # raw control characters, NUL included, inside a string
        char = bytes([rng.choice([0, 1, 7, 8, 11, 12, 13, 27, 31])])
        return good.replace(b"invoice", b"inv" + char + b"oice"), READ
    if kind == 3:  # nested past the limit
        depth = rng.choice([65, 100, 1000, 5000, 50_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return b'{"text": ' + opener * depth + b"1" * (opener == b'{"a":') + closer * depth + b"}", READ
    if kind == 4:  # bytes that are not UTF-8
        junk = bytes(rng.choice([0x80, 0xC0, 0xFF, 0xFE, 0xED]) for _ in range(rng.randrange(1, 5)))
        return good.replace(b"wrong", b"wr" + junk + b"ong"), READ
    if kind == 5:  # a byte order mark before the row
        return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]) + good, READ
    if kind == 6:  # not an object
        return rng.choice([b"[1, 2]", b'"text"', b"42", b"null", b"true", b"[]"]), READ
    if kind == 7:  # NaN, Infinity, integers past Python's digit limit
        return rng.choice([b'{"text": NaN, "label": "x"}', b'{"text": -Infinity, "label": "x"}',
                           b'{"text": ' + b"9" * rng.randrange(4301, 9000) + b', "label": "x"}']), READ
    if kind == 8:  # a mapped column missing
        return json.dumps(rng.choice([{}, {"label": "x"}, {"text": "x"}, {"TEXT": "x", "label": "y"}])
                          ).encode(), COLUMN
    if kind == 9:  # wrong types in a mapped column
        return _row(text=rng.choice([1, 1.5, True, [1, "a"], {"k": [1]}, ""])), False
    if kind == 10:  # odd but valid unicode
        text = "".join(chr(rng.choice([0x200B, 0x202E, 0xFEFF, 0x0301, 0x1F600, 0x10FFFF, 0xFFFD,
                                       0x0000, 0x2028, 0x00E9])) for _ in range(rng.randrange(1, 30)))
        return json.dumps({**GOOD, "text": text}, ensure_ascii=rng.random() < 0.5).encode(), False
    if kind == 11:  # CRLF line ends, and bare carriage returns between tokens
        return rng.choice([good + b"\r", good.replace(b", ", b",\r")]), False
    if kind == 12:  # huge rows
        return _row(text="x" * rng.randrange(100_000, 1_000_000)), False
    if kind == 13:  # nested within the limit
        depth = rng.randrange(1, 60)
        return b'{"label": "x", "text": "t", "extra": ' + b"[" * depth + b"]" * depth + b"}", False
    if kind == 14:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).replace(b"\n", b""), False
    # several JSON values on one line, trailing garbage
    return rng.choice([good + good, good + b" x", good + b"\x00"]), READ


def test_fuzz_1000_malformed_rows_end_in_located_messages(repo, capsys):
    # the dataset is under test: one config load a round, not one per overlay and deployment
    for other in (*(repo / "configs/classification").glob("experiment.*.yaml"), repo / DEPLOYMENT):
        other.unlink()
    passed = 0
    rng = random.Random(20)
    path = repo / DATASET
    header = path.read_bytes().splitlines(keepends=True)[:2]  # two good rows first
    started, rows = time.monotonic(), 0
    for round_ in range(100):  # every tenth round only odd but valid rows: those must pass
        lines = [_fuzzed(rng, ODD_BUT_VALID if round_ % 10 == 0 else range(16)) for _ in range(10)]
        path.write_bytes(b"".join(header) + b"".join(raw + b"\n" for raw, _ in lines))
        code, output = validate(repo, capsys, "--json")
        rows += len(lines)
        assert_clean(code, output)
        report = json.loads(output)
        problems = [p for uc in report["use_cases"] for p in uc.get("problems", [])]
        assert code == (2 if problems else 0)
        assert code == 0 or round_ % 10, problems
        passed += code == 0
        unreadable = any(refused == READ for _, refused in lines)
        for number, (raw, refused) in enumerate(lines, start=len(header) + 1):
            if refused == READ or (refused == COLUMN and not unreadable):  # named at its line
                assert any(p["file"] == DATASET and p["line"] == number for p in problems), \
                    (number, raw[:200], problems)
        for problem in problems:
            if problem["file"] == DATASET and problem["line"] is not None:
                assert len(header) < problem["line"] <= len(header) + len(lines)
    assert rows >= 1000 and passed >= 10
    assert time.monotonic() - started < 120


# -- 12: --no-progress on every phase -----------------------------------------------------------

def test_run_init_accepts_no_progress_like_the_other_phases(tmp_path, state_dir, capsys):
    repo = make_repo(tmp_path / "demo", engine="python")  # the flag, not promptflow's connection store
    code, output = run(capsys, "--repo", str(repo), "run", "init", "-u", "demo", "--no-progress")
    assert code == 0, output
    assert "datasets:" in output and "unrecognized arguments" not in output


# -- 3: binary bytes in the audit chain ---------------------------------------------------------

AUDIT_KEY = "0123456789abcdef" * 4


def test_binary_bytes_in_the_audit_chain_are_damage_with_an_incident(repo, capsys, monkeypatch,
                                                                     tmp_path):
    trust = tmp_path / "trust"
    monkeypatch.setenv("GENAIOPS_TRUST_DIR", str(trust))
    monkeypatch.setenv("GENAIOPS_AUDIT_KEY", AUDIT_KEY)
    approve = ["--repo", str(repo), "approve", "-u", "classification", "-e", "local",
               "--artifact", "sha256:" + "a" * 64, "--by", "alice"]
    code, output = run(capsys, *approve)
    assert code == 0, output
    chain = next((tmp_path / "state").rglob("audit.jsonl"))
    chain.write_bytes(chain.read_bytes() + b'{"seq": 1, "by": "\xff\xfe\x00mallory"}\n')
    commands = {"verify_failed": ["--repo", str(repo), "audit", "verify"],
                "decision_unrecorded": approve,
                "deploy_refused": ["--repo", str(repo), "run", "deploy", "-u", "classification",
                                   "-e", "local"]}
    for argv in commands.values():
        code, output = run(capsys, *argv)
        assert code == 1, output  # a broken chain, as for any other tampering
        assert f"audit chain damaged: {chain} line 2 holds bytes that are not UTF-8 text" in output
        assert "internal error" not in output and "UnicodeDecodeError" not in output
    incidents = [json.loads(line) for path in trust.rglob("incidents/*.jsonl")
                 for line in path.read_text().splitlines()]
    assert [i["event"] for i in incidents] == list(commands)
    assert all(str(chain) in i["reason"] for i in incidents)


# -- 4: a resealed registry record with a version that is not a number --------------------------

def test_resealed_registry_record_with_a_bad_version_is_damaged_state(repo, capsys, state_dir,
                                                                      monkeypatch):
    from genaiops.workspace.integrity import SEAL, seal

    away_from_the_simulator(monkeypatch)

    code, output = run(capsys, "--repo", str(repo), "run", "init", "-u", "classification",
                       "--no-progress")
    assert code == 0, output
    record = next((state_dir / "registry" / "records").rglob("1.json"))
    data = json.loads(record.read_text())
    data.pop(SEAL)
    record.write_text(json.dumps(seal({**data, "version": "x"})))  # the seal holds, the content not
    code, output = run(capsys, "--repo", str(repo), "registry", "list")
    assert code == 1, output
    assert f"{record} (its version 'x' is not a positive whole number)" in output
    assert "internal error" not in output and "ValueError" not in output


# -- 5, 6: runs at once are bounded -------------------------------------------------------------

CONFIG = "configs/classification/experiment.yaml"


def edit(repo, old: str, new: str, file: str = CONFIG) -> int:
    """`old` replaced by `new` in `file`; the line `new` starts on."""
    path = repo / file
    text = path.read_text()
    assert old in text, (old, file)
    path.write_text(text.replace(old, new, 1))
    return text[:text.index(old)].count("\n") + 1


def test_max_parallel_in_config_is_bounded(repo, capsys):
    line = edit(repo, "  max_parallel: 2\n", "  max_parallel: 100000\n")
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert (f"{CONFIG}:{line}: runtime.max_parallel: 100000 runs at once is more than genaiops "
            "starts (at most 64") in output
    assert "fix: set it to 64 or less" in output


def test_max_parallel_flag_is_bounded_with_auto_workers(repo, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exited:  # argparse: a usage error
        main(["--repo", str(repo), "run", "experiment", "-u", "classification",
              "--max-parallel", "100000"])
    assert exited.value.code == 2
    assert "'100000' is more than 64 runs at once" in capsys.readouterr().err
    # within 64 but more than the machine's memory holds at one worker a run (worker_count: auto)
    from genaiops.execution import capacity

    small = capacity.Machine(cores=2, memory_bytes=1 * 2**30)  # holds 5 workers at ~150 MB
    monkeypatch.setattr(capacity.Machine, "current", classmethod(lambda cls: small))
    code, output = run(capsys, "--repo", str(repo), "run", "experiment", "-u", "classification",
                       "--max-parallel", "8", "--no-progress")
    assert code == 2, output
    assert "--workers/--max-parallel: 8 runs at once, each with at least one worker, is more " \
           "than this machine's memory holds" in output
    assert not list((repo.parent / "state").rglob("runs/*.json"))  # nothing ran


# -- 7: the smoke request stays inside the repository -------------------------------------------

@pytest.mark.parametrize("request_path", ["/etc/passwd", "../../../etc/passwd"])
def test_smoke_request_outside_the_repository_is_refused_at_validate(repo, capsys, request_path):
    line = edit(repo, "request: configs/classification/sample-request.json",
                f"request: {request_path}", DEPLOYMENT)
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert (f"{DEPLOYMENT}:{line}: smoke.request: smoke request file {request_path!r} is outside "
            "the repository (fix: use a path relative to the repository root") in output


def test_validate_checks_deployment_yaml_and_passes_the_sample(repo, capsys):
    code, output = validate(repo, capsys)
    assert code == 0, output
    assert DEPLOYMENT in output  # checked, and named among the files


# -- 8: variables the engine sets itself --------------------------------------------------------

def test_engine_reserved_variables_are_refused_naming_the_field_to_use(repo, capsys):
    """PF_WORKER_COUNT: 64 with worker_count: 2 used to start 36 line processes."""
    edit(repo, "  worker_count: auto ", "  worker_count: 2 ")
    line = edit(repo, "prices:\n", 'environment_variables:\n  PF_WORKER_COUNT: "64"\n'
                "  PF_HOME_DIRECTORY: /tmp/elsewhere\n  CLASSIFIER_MODE: strict\nprices:\n") + 1
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert (f"{CONFIG}:{line}: environment_variables.PF_WORKER_COUNT: PF_WORKER_COUNT is set by the "
            "promptflow engine for every run; a value here would override it "
            "(fix: remove it; set runtime.worker_count)") in output
    assert f"{CONFIG}:{line + 1}: environment_variables.PF_HOME_DIRECTORY" in output
    assert "CLASSIFIER_MODE" not in output  # the flow's own variables stay allowed


def test_every_engine_names_its_reserved_variables():
    from genaiops.engines import ENGINES, open_engine

    for name in ENGINES:
        reserved = open_engine(name).reserved_variables()
        assert reserved and all(isinstance(v, str) and v for v in reserved.values()), name


# -- 9: inputs that silently take their default, null in mapped columns -------------------------

def test_an_unmapped_input_with_a_default_is_a_note(repo, capsys):
    """promptflow gives every line an unmapped input's default, even when the rows hold a column
    of that name: worth a note, not an error."""
    line = edit(repo, "    mappings:\n      text: ${data.text}\n", "    mappings: {}\n")
    code, output = validate(repo, capsys)
    assert code == 0, output
    assert (f"note: {CONFIG}:{line}: datasets[0].mappings: flow input 'text' is not mapped: every "
            "row takes its default") in output
    assert output.count("flow input 'text' is not mapped") == 1  # once, not once per overlay


def test_null_in_a_mapped_column_is_an_error_unless_allowed(repo, capsys):
    line = append_row(repo, b'{"text": null, "label": "billing"}')
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert (f"{DATASET}:{line}: column 'text', which datasets[0].mappings.text maps, is null "
            "(fix: give it a value, or allow null for it: `allow_null: [text]`") in output
    edit(repo, "    mappings:\n      text: ${data.text}\n",
         "    mappings:\n      text: ${data.text}\n    allow_null: [text]\n")
    code, output = validate(repo, capsys)
    assert code == 0, output
    edit(repo, "    allow_null: [text]\n", "    allow_null: [txet]\n")
    code, output = validate(repo, capsys)
    assert code == 2 and "datasets[0].allow_null: allow_null names 'txet', which no mapping" in output


# -- 10: prompty variants in a shape promptflow ignores -----------------------------------------

def test_prompty_variant_keys_promptflow_ignores_are_refused(tmp_path, capsys, state_dir):
    root = tmp_path / "prompty"
    for folder in ("configs", "flows", "datasets"):
        (root / folder).mkdir(parents=True)
    code, output = run(capsys, "--repo", str(root), "new", "demo", "--kind", "prompty")
    assert code == 0, output
    config = "configs/demo/experiment.yaml"
    line = edit(root, "    init: {model: {parameters: {temperature: 0.9}}}\n",
                "    init: {temperature: 0.9, model: {temprature: 1}}\n", config)
    code, output = run(capsys, "--repo", str(root), "validate", "-u", "demo")
    assert code == 2, output
    assert (f"{config}:{line}: variants[1].init.temperature: `temperature` is not a parameter the "
            "promptflow engine applies to a prompty flow") in output
    assert "init: {model: {parameters: {temperature: 0.9}}}" in output  # the fix shows the shape
    assert "variants[1].init.model.temprature" in output
    edit(root, "    init: {temperature: 0.9, model: {temprature: 1}}\n",
         "    init: {model: {parameters: {temperature: 0.9}}}\n", config)  # the working shape
    code, output = run(capsys, "--repo", str(root), "validate", "-u", "demo")
    assert code == 0, output


# -- 11: the flow's requirements.txt ------------------------------------------------------------

def test_flow_requirements_missing_from_the_engine_environment_are_named(repo, capsys):
    requirements = "flows/classification/standard/requirements.txt"
    (repo / requirements).write_text("# what the flow imports\npyyaml>=5\n"
                                     "genaiops-test-absent-package==1.0  # like bs4\n"
                                     "PyYAML<1\n-r other.txt\n")
    code, output = validate(repo, capsys)
    assert code == 2, output
    assert (f"{requirements}:3: the flow needs 'genaiops-test-absent-package==1.0', but the "
            "promptflow engine's environment") in output
    assert "is not installed: every line would fail" in output
    assert f"{requirements}:4: the flow needs 'PyYAML<1'" in output and "finds 6." in output
    assert f"-m pip install -r {repo / requirements}" in output
    assert f"{requirements}:2" not in output and f"{requirements}:5" not in output
    (repo / requirements).write_text("pyyaml>=5\n")  # what is installed passes
    code, output = validate(repo, capsys)
    assert code == 0, output
