"""The embedded registry: one version per distinct content, exact pins, safe under concurrent processes."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from genaiops import hashing
from genaiops.cli.registry import add_registry_parser
from genaiops.engines.promptflow import PromptflowEngine
from genaiops.errors import GenaiopsError, UsageError
from genaiops.project import Project
from genaiops.registry import AssetSpec
from genaiops.registry.blobstore import BlobStore


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "configs").mkdir(parents=True)
    (root / "flows" / "uc" / "standard").mkdir(parents=True)
    (root / "flows" / "uc" / "standard" / "flow.dag.yaml").write_text("inputs: {}\n")
    (root / "flows" / "uc" / "standard" / "prompt.jinja2").write_text("user: {{text}}\n")
    (root / "datasets").mkdir()
    (root / "datasets" / "tickets.jsonl").write_text('{"text": "refund"}\n')
    return root


@pytest.fixture
def registry(repo, state_dir):
    return Project.at(repo).registry("local")


def tickets(repo) -> AssetSpec:
    return AssetSpec("tickets", "dataset", repo / "datasets" / "tickets.jsonl", "labelled tickets")


def test_register_twice_gives_one_version(registry, repo):
    first = registry.register(tickets(repo))
    second = registry.register(tickets(repo))
    assert (first.version, first.created, first.uri) == (1, True, "local:tickets:1")
    assert (second.version, second.created, second.uri) == (1, False, "local:tickets:1")
    assert first.content_hash == hashing.hash_file(repo / "datasets" / "tickets.jsonl")
    assert [r.version for r in registry.versions("tickets")] == [1]


def test_change_then_revert_finds_the_old_version(registry, repo):
    path = repo / "datasets" / "tickets.jsonl"
    original = path.read_bytes()
    v1 = registry.register(tickets(repo))
    path.write_text('{"text": "refund"}\n{"text": "password"}\n')
    v2 = registry.register(tickets(repo))
    path.write_bytes(original)
    again = registry.register(tickets(repo))
    assert (v2.version, v2.created) == (2, True)
    assert v2.content_hash != v1.content_hash
    assert (again.version, again.created, again.content_hash) == (1, False, v1.content_hash)
    assert [r.version for r in registry.versions("tickets")] == [1, 2]
    assert registry.get("tickets").version == 2  # latest
    assert registry.get("tickets", 1).content_hash == v1.content_hash


def test_flow_cache_files_do_not_make_a_new_version(registry, repo):
    flow = repo / "flows" / "uc" / "standard"
    spec = AssetSpec("classifier", "flow", flow, ignores=PromptflowEngine.cache_patterns)
    v1 = registry.register(spec)
    (flow / "__pycache__").mkdir()
    (flow / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    (flow / ".promptflow").mkdir()
    (flow / ".promptflow" / "flow.log").write_text("log")
    assert registry.register(spec).version == v1.version == 1
    (flow / "prompt.jinja2").rename(flow / "prompt2.jinja2")
    assert registry.register(spec).version == 2


def test_tags_hold_hash_source_commit_and_build(repo, state_dir, monkeypatch):
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    monkeypatch.setenv("BUILD_BUILDID", "4711")
    reg = Project.at(repo).registry("local").register(
        AssetSpec("tickets", "dataset", Path("datasets/tickets.jsonl"))
    )
    assert reg.tags == {
        "content_hash": reg.content_hash,
        "source": "datasets/tickets.jsonl",
        "git_commit": head,
        "build_id": "4711",
    }


def test_tags_without_git_or_build(registry, repo, monkeypatch):
    monkeypatch.delenv("BUILD_BUILDID", raising=False)
    monkeypatch.delenv("BUILD_SOURCEVERSION", raising=False)
    reg = registry.register(tickets(repo))
    assert reg.tags["git_commit"] is None and reg.tags["build_id"] is None


def test_registered_bytes_are_stored_under_their_hash(registry, repo, state_dir):
    data = registry.register(tickets(repo))
    hexdigest = data.content_hash.split(":")[1]
    blob = state_dir / "registry" / "blobs" / "sha256" / hexdigest
    assert Path(data.location) == blob
    assert blob.read_bytes() == (repo / "datasets" / "tickets.jsonl").read_bytes()

    flow_dir = repo / "flows" / "uc" / "standard"
    (flow_dir / "__pycache__").mkdir()
    (flow_dir / "__pycache__" / "x.pyc").write_bytes(b"cache")
    flow = registry.register(AssetSpec("classifier", "flow", flow_dir))
    stored = Path(flow.location)
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) == [
        "flow.dag.yaml",
        "prompt.jinja2",
    ]
    assert hashing.hash_tree(stored) == flow.content_hash
    # The registered copy survives edits of the source.
    (repo / "datasets" / "tickets.jsonl").write_text("changed\n")
    assert registry.get("tickets", 1).location == str(blob) and blob.read_bytes() != b"changed\n"


def test_blob_store_refuses_a_file_changed_after_hashing(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text("one\n")
    snap = hashing.snapshot(src)
    src.write_text("two\n")
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(GenaiopsError, match="changed while it was being registered"):
        store.put(snap)
    assert not store.path_for(snap.content_hash).exists()
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []  # no staging left behind


def test_list_assets(registry, repo):
    registry.register(tickets(repo))
    (repo / "datasets" / "tickets.jsonl").write_text("v2\n")
    registry.register(tickets(repo))
    registry.register(AssetSpec("classifier", "flow", repo / "flows" / "uc" / "standard"))
    assert registry.list_assets() == [
        {"name": "classifier", "kind": "flow", "latest_version": 1, "versions": 1},
        {"name": "tickets", "kind": "dataset", "latest_version": 2, "versions": 2},
    ]


def test_user_errors_are_usage_errors(registry, repo):
    with pytest.raises(UsageError, match="no asset named 'nope'.*") as err:
        registry.get("nope")
    registry.register(tickets(repo))
    with pytest.raises(UsageError, match="has no version 9") as err:
        registry.get("tickets", 9)
    assert "versions: 1" in str(err.value)
    with pytest.raises(UsageError, match="already a dataset"):
        registry.register(AssetSpec("tickets", "flow", repo / "flows" / "uc" / "standard"))
    with pytest.raises(UsageError, match="invalid asset name"):
        registry.register(AssetSpec("bad name!", "dataset", repo / "datasets" / "tickets.jsonl"))
    with pytest.raises(UsageError, match="does not exist"):
        registry.register(AssetSpec("x", "dataset", repo / "datasets" / "missing.jsonl"))
    with pytest.raises(UsageError, match="unknown kind"):
        registry.register(AssetSpec("x", "model", repo / "datasets" / "tickets.jsonl"))  # type: ignore[arg-type]
    empty = repo / "flows" / "uc" / "empty"
    (empty / "__pycache__").mkdir(parents=True)
    (empty / "__pycache__" / "a.pyc").write_bytes(b"x")
    with pytest.raises(UsageError, match="nothing to register"):
        registry.register(AssetSpec("empty", "flow", empty))
    with pytest.raises(UsageError, match="unknown registry backend 'nexus'"):
        Project.at(repo).registry("nexus")


def _garble(catalog: Path, data: bytes) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(catalog) + suffix).unlink(missing_ok=True)
    catalog.write_bytes(data)


@pytest.mark.parametrize("garbage", [b"", b"this is not a database" * 100], ids=["0-byte", "garbled"])
def test_a_lost_catalogue_is_rebuilt_from_the_registration_records(registry, repo, state_dir, garbage):
    """A 0-byte catalogue used to restart at v1, re-using version numbers already pinned."""
    registry.register(tickets(repo))
    (repo / "datasets" / "tickets.jsonl").write_text("v2\n")
    assert registry.register(tickets(repo)).version == 2
    catalog = state_dir / "registry" / "catalog.sqlite"
    _garble(catalog, garbage)
    fresh = Project.at(repo).registry("local")
    assert [r.version for r in fresh.versions("tickets")] == [1, 2]
    (repo / "datasets" / "tickets.jsonl").write_text("v3\n")
    assert fresh.register(tickets(repo)).version == 3
    assert len(list((state_dir / "quarantine").rglob("catalog.sqlite"))) == 1


def test_a_catalogue_row_that_differs_from_its_record_is_rebuilt(registry, repo, state_dir):
    first = registry.register(tickets(repo))
    import sqlite3

    with sqlite3.connect(state_dir / "registry" / "catalog.sqlite") as conn:
        conn.execute("UPDATE assets SET content_hash = 'sha256:' || printf('%064d', 0)")
    assert Project.at(repo).registry("local").get("tickets", 1).content_hash == first.content_hash


def test_a_corrupt_catalogue_without_records_is_a_clear_error(registry, repo, state_dir):
    registry.register(tickets(repo))
    import shutil

    shutil.rmtree(state_dir / "registry" / "records")
    _garble(state_dir / "registry" / "catalog.sqlite", b"this is not a database" * 100)
    with pytest.raises(GenaiopsError, match="catalog.sqlite is unusable") as err:
        Project.at(repo).registry("local").list_assets()
    assert "move it away" in str(err.value)


def test_a_damaged_blob_is_quarantined_and_stored_again(registry, repo, state_dir):
    registration = registry.register(tickets(repo))
    blob = Path(registration.location)
    blob.write_text("garbled\n")
    with pytest.raises(GenaiopsError, match="registered bytes of local:tickets:1 are damaged"):
        Project.at(repo).registry("local").get("tickets", 1)
    again = Project.at(repo).registry("local").register(tickets(repo))  # the source still has the bytes
    assert (again.version, again.created) == (1, False)
    assert blob.read_bytes() == (repo / "datasets" / "tickets.jsonl").read_bytes()
    assert Project.at(repo).registry("local").get("tickets", 1).version == 1


# -- concurrency: real processes --------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from genaiops.project import Project
    from genaiops.registry import AssetSpec
    repo, content_dir, go, index, rounds = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    while not go.exists():
        time.sleep(0.005)
    registry = Project.at(repo).registry("local")
    results = []
    for r in range(rounds):
        for name, variant in (("shared", "same"), ("mixed", f"v{(index + r) % 3}")):
            reg = registry.register(AssetSpec(name, "dataset", content_dir / f"{variant}.jsonl"))
            results.append([name, reg.version, reg.content_hash, reg.created])
    print(json.dumps(results))
    """
)


def test_concurrent_processes_never_duplicate_versions(repo, state_dir, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "same.jsonl").write_text('{"a": 0}\n')
    for i in range(3):
        (content / f"v{i}.jsonl").write_text(f'{{"a": {i + 1}}}\n')
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(repo), str(content), str(go), str(i), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    time.sleep(0.5)  # let every interpreter start and wait at the gate: maximum contention
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results += json.loads(out)

    catalog = state_dir / "registry" / "catalog.sqlite"
    with sqlite3.connect(catalog) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT name, version, content_hash FROM assets ORDER BY name, version"
        ).fetchall()
    by_name: dict[str, list] = {}
    for name, version, content_hash in rows:
        by_name.setdefault(name, []).append((version, content_hash))
    assert [v for v, _ in by_name["shared"]] == [1]
    assert [v for v, _ in by_name["mixed"]] == [1, 2, 3]
    assert len({h for _, h in by_name["mixed"]}) == 3
    # Every process saw the same version for the same content, and exactly one creation per version.
    pins = {(name, h): v for name, versions in by_name.items() for v, h in versions}
    assert all(pins[(name, h)] == v for name, v, h, _ in results)
    assert sum(created for *_, created in results) == 4


# -- CLI --------------------------------------------------------------------------------------


def run_cli(argv, monkeypatch, repo) -> int:
    monkeypatch.setenv("GENAIOPS_REPO", str(repo))
    parser = argparse.ArgumentParser(prog="genaiops")
    add_registry_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_and_show(registry, repo, monkeypatch, capsys):
    registry.register(tickets(repo))
    (repo / "datasets" / "tickets.jsonl").write_text("v2\n")
    v2 = registry.register(tickets(repo))

    assert run_cli(["registry", "list", "--json"], monkeypatch, repo) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "tickets", "kind": "dataset", "latest_version": 2, "versions": 2}
    ]

    assert run_cli(["registry", "list"], monkeypatch, repo) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "KIND", "LATEST", "VERSIONS"]
    assert table[2].split() == ["tickets", "dataset", "2", "2"]

    assert run_cli(["registry", "show", "tickets", "--json"], monkeypatch, repo) == 0
    assert [r["uri"] for r in json.loads(capsys.readouterr().out)] == [
        "local:tickets:1",
        "local:tickets:2",
    ]

    assert (
        run_cli(["registry", "show", "tickets", "--version", "2", "--json"], monkeypatch, repo) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["content_hash"], shown["tags"]["source"]) == (
        2,
        v2.content_hash,
        "datasets/tickets.jsonl",
    )

    assert run_cli(["registry", "show", "tickets", "--version", "2"], monkeypatch, repo) == 0
    text = capsys.readouterr().out
    assert "local:tickets:2" in text and v2.content_hash in text

    with pytest.raises(UsageError, match="has no version 5"):
        run_cli(["registry", "show", "tickets", "--version", "5"], monkeypatch, repo)


def test_cli_azureml_backend_without_settings_names_the_variables(repo, monkeypatch, state_dir):
    for var in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        UsageError, match="AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"
    ):
        run_cli(["registry", "list", "--backend", "azureml"], monkeypatch, repo)
