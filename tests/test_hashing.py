"""Content hashes: stable across machines and walk order, sensitive to names and bytes, blind to caches."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tracemalloc
import unicodedata
from pathlib import Path

import pytest

from genaiops import hashing
from genaiops.engines.promptflow import PromptflowEngine
from genaiops.errors import UsageError
from genaiops.hashing import CHUNK_SIZE, IgnoreRules, hash_file, hash_path, hash_tree, snapshot

FLOW_FILES = {
    "flow.dag.yaml": b"inputs:\n  text: {type: string}\n",
    "classify.jinja2": b"system: classify\nuser: {{text}}\n",
    "tools/helpers.py": b"def f():\n    return 1\n",
    "tools/data/labels.txt": b"billing\naccount\nother\n",
}


def write_tree(root: Path, files: dict[str, bytes], order=None) -> Path:
    for rel in order or files:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[rel])
    return root


@pytest.fixture
def flow(tmp_path) -> Path:
    return write_tree(tmp_path / "flow", FLOW_FILES)


def reference_tree_hash(files: dict[str, bytes]) -> str:
    """The documented format, written independently: a regression guard for cross-machine stability."""
    digest = hashlib.sha256(b"genaiops-tree-v1\0")
    for rel in sorted(files, key=lambda r: r.encode("utf-8")):
        encoded = rel.encode("utf-8")
        digest.update(
            len(encoded).to_bytes(8, "big") + encoded + hashlib.sha256(files[rel]).digest()
        )
    return "sha256:" + digest.hexdigest()


def test_tree_hash_matches_the_documented_format(flow):
    assert hash_tree(flow) == reference_tree_hash(FLOW_FILES)


def test_creation_order_mtime_and_permissions_do_not_matter(tmp_path, flow):
    other = write_tree(tmp_path / "other", FLOW_FILES, order=list(reversed(list(FLOW_FILES))))
    os.utime(other / "flow.dag.yaml", (1_000_000, 1_000_000))
    os.chmod(other / "tools/helpers.py", 0o755)
    (other / "empty-folder").mkdir()
    assert hash_tree(other) == hash_tree(flow)


def test_directory_listing_order_does_not_matter(flow, monkeypatch):
    before = hash_tree(flow)
    real_scandir = os.scandir
    monkeypatch.setattr(hashing.os, "scandir", lambda p: list(reversed(list(real_scandir(p)))))
    assert hash_tree(flow) == before


def test_renaming_a_file_changes_the_hash(flow):
    before = hash_tree(flow)
    (flow / "classify.jinja2").rename(flow / "classify2.jinja2")
    assert hash_tree(flow) != before


def test_moving_a_file_to_another_folder_changes_the_hash(flow):
    before = hash_tree(flow)
    (flow / "tools/data/labels.txt").rename(flow / "tools/labels.txt")
    assert hash_tree(flow) != before


def test_changing_one_byte_changes_the_hash(flow):
    before = hash_tree(flow)
    (flow / "tools/data/labels.txt").write_bytes(b"billing\naccount\nothe!\n")
    assert hash_tree(flow) != before


def test_framing_separates_names_from_contents(tmp_path):
    a = write_tree(tmp_path / "a", {"a": b"bc"})
    b = write_tree(tmp_path / "b", {"ab": b"c"})
    c = write_tree(tmp_path / "c", {"x": b"12", "y": b""})
    d = write_tree(tmp_path / "d", {"x": b"1", "y": b"2"})
    assert hash_tree(a) != hash_tree(b)
    assert hash_tree(c) != hash_tree(d)


def test_caches_and_build_outputs_are_ignored(flow):
    before = hash_tree(flow, PromptflowEngine.cache_patterns)
    write_tree(
        flow,
        {
            "__pycache__/helpers.cpython-311.pyc": b"\x00junk",
            "tools/__pycache__/x.pyc": b"junk",
            "tools/stray.pyc": b"junk",
            ".promptflow/flow.tools.json": b"{}",
            "process_log/0.log": b"worker log",
            ".genaiops/ledger.json": b"{}",
            ".DS_Store": b"mac",
            "tools/.DS_Store": b"mac",
            "build/Dockerfile": b"FROM x",
            "dist/flow.whl": b"zip",
            "pkg.egg-info/PKG-INFO": b"x",
        },
    )
    assert hash_tree(flow, PromptflowEngine.cache_patterns) == before
    files = snapshot(flow, PromptflowEngine.cache_patterns).files
    assert [e.rel for e in files] == sorted(FLOW_FILES, key=str.encode)
    # the engine's caches are the engine's business: without its patterns they count
    assert hash_tree(flow) != before


def test_build_is_ignored_only_at_the_top(flow):
    before = hash_tree(flow)
    write_tree(flow, {"tools/build/keep.py": b"x = 1\n"})
    assert hash_tree(flow) != before


def test_genaiopsignore_patterns(flow):
    write_tree(flow, {".genaiopsignore": b"# local junk\n*.log\nscratch/\n/notes.md\n!keep.log\n"})
    before = hash_tree(flow)
    write_tree(
        flow, {"run.log": b"1", "tools/deep.log": b"2", "scratch/a.txt": b"3", "notes.md": b"4"}
    )
    assert hash_tree(flow) == before
    write_tree(flow, {"tools/notes.md": b"anchored pattern does not reach here"})
    assert hash_tree(flow) != before
    again = hash_tree(flow)
    write_tree(flow, {"keep.log": b"re-included"})
    assert hash_tree(flow) != again


def test_ignore_rules_semantics():
    rules = IgnoreRules(["secret*", "docs/*.md", "**/tmp", "cache/", "!secret_ok"])
    assert rules.ignored("secret.txt", False)
    assert rules.ignored("a/b/secret.txt", False)
    assert not rules.ignored("secret_ok", False)
    assert rules.ignored("docs/readme.md", False)
    assert not rules.ignored("other/docs/readme.md", False)
    assert rules.ignored("tmp", True) and rules.ignored("a/tmp", True)
    assert rules.ignored("x/cache", True)
    assert not rules.ignored("x/cache", False)  # "cache/" means folders only
    # as in git, `*` in an anchored pattern stops at `/`; `**` crosses folders
    assert not rules.ignored("docs/api/readme.md", False)
    assert IgnoreRules(["docs/**/*.md"]).ignored("docs/api/readme.md", False)


def test_unicode_names_hash_the_same_in_nfc_and_nfd(tmp_path):
    name = "café.txt"
    nfc = write_tree(tmp_path / "nfc", {unicodedata.normalize("NFC", name): b"x"})
    nfd = write_tree(tmp_path / "nfd", {unicodedata.normalize("NFD", name): b"x"})
    assert hash_tree(nfc) == hash_tree(nfd)


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 12345]
)
def test_dataset_hash_is_sha256_of_the_bytes(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    assert hash_file(path) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert hash_path(path) == hash_file(path)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_dataset_hash_agrees_with_sha256sum(tmp_path):
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(b'{"text": "refund please"}\n' * 1000)
    out = subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert hash_file(path) == "sha256:" + out.split()[0]


def test_hashing_streams_in_constant_memory(tmp_path):
    path = tmp_path / "big.bin"
    with open(path, "wb") as handle:
        handle.writelines(os.urandom(CHUNK_SIZE) for _ in range(24))
    tracemalloc.start()
    try:
        hash_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * CHUNK_SIZE, f"peak {peak} bytes while hashing a 24 MiB file"


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        hash_path(tmp_path / "nope")


def test_broken_symlink_names_the_link(flow):
    (flow / "dangling").symlink_to(flow / "missing-target")
    with pytest.raises(UsageError, match="broken symlink .*dangling"):
        hash_tree(flow)


def test_symlink_cycle_terminates(flow):
    (flow / "tools" / "loop").symlink_to(flow / "tools", target_is_directory=True)
    assert [e.rel for e in snapshot(flow).files] == sorted(FLOW_FILES, key=str.encode)


def test_sample_flows_hash_the_same_wherever_they_are_copied(repo_root, tmp_path):
    flows = [p for p in (repo_root / "flows").glob("*/*") if p.is_dir()]
    if not flows:
        pytest.skip("no sample flows in this checkout")
    for i, folder in enumerate(flows):
        copy = shutil.copytree(folder, tmp_path / str(i) / "elsewhere")
        (copy / "__pycache__").mkdir(exist_ok=True)
        (copy / "__pycache__" / "x.pyc").write_bytes(b"cache")
        assert hash_tree(copy) == hash_tree(folder), folder
