"""Serve the LLM SIMULATOR in the foreground until Ctrl-C or SIGTERM, behind an honest banner.

This is what `genaiops simulator` and `python -m genaiops.simulator` run. It takes plain
arguments (no argparse) and prints through the `out` it is given, so the CLI can redact.
Errors a user can cause (bad rules file, unknown use case, port in use) are `GenaiopsError`s.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from genaiops.errors import UsageError
from genaiops.simulator import DEFAULT_PORT
from genaiops.simulator.server import SIMULATOR_NAME, SimulatorServer
from genaiops.workspace.repo import SIMULATOR_FILE, ConfigsLayout

_USE_CASE = re.compile(r"^[a-z0-9_-]+$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def use_case_rules(repo_root: Path, use_case: str) -> Path:
    """configs/<use_case>/simulator.yaml of the repository, or a UsageError naming the others."""
    if not _USE_CASE.match(use_case):
        raise UsageError(f"use case name {use_case!r} may use only a-z, 0-9, '_' and '-'")
    layout = ConfigsLayout(repo_root)
    path = layout.simulator_rules(use_case)
    if not path.is_file():
        have = layout.use_cases(having=SIMULATOR_FILE)
        raise UsageError(
            f"{path} does not exist",
            hint=f"use cases with simulator rules: {', '.join(have) or 'none'}; "
                 "or pass --rules PATH",
        )
    return path


def banner(sim: SimulatorServer, rules_path: Path | None) -> str:
    """What a person sees first: that this is a simulator, and how to point a client at it."""
    rules = f"{rules_path} ({sim.rules.summary()})" if rules_path else "none (echo replies)"
    jitter = f" + up to {sim.jitter_ms:g} ms jitter" if sim.jitter_ms else ""
    lines = [
        "=" * 72,
        f" {SIMULATOR_NAME}: an LLM SIMULATOR, NOT A REAL MODEL.",
        " Answers are canned by rules, deterministic, for tests and demos only.",
        "=" * 72,
        f"  rules         {rules}",
        f"  latency       {sim.latency_ms:g} ms{jitter}",
        f"  quota         {_quota_text(sim)}",
        f"  OpenAI        base_url={sim.openai_base_url}   (any non-empty api key)",
        f"  Azure OpenAI  api_base={sim.azure_endpoint}   (any deployment, any api-version)",
        f"  control       {sim.url}/_simulator/stats  /_simulator/faults  /_simulator/reset",
    ]
    if sim.host not in _LOOPBACK:
        lines.append(f"  WARNING       listening on {sim.host}, not loopback only")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _quota_text(sim: SimulatorServer) -> str:
    spec = sim.quota.spec
    if not spec.enabled:
        return "none"
    parts = [f"{spec.rpm} RPM" if spec.rpm else "", f"{spec.tpm} TPM" if spec.tpm else ""]
    return " / ".join(p for p in parts if p) + " per deployment (429 with retry-after-ms beyond)"


def serve(rules_path: Path | None, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          latency_ms: float = 0.0, jitter_ms: float = 0.0, verbose: bool = False,
          quota: dict | None = None, out: Callable[[str], None] = print, drift: dict | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly, say what was served, and return 0."""
    sim = SimulatorServer(rules_path, latency_ms=latency_ms, host=host, port=port,
                          jitter_ms=jitter_ms, verbose=verbose, quota=quota)
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        sim.start()
        out(banner(sim, rules_path))
        if drift and (drift.get("rules") or drift.get("error_rate") or drift.get("latency_ms")):
            from genaiops.simulator.rules import load_rules

            rules = load_rules(drift["rules"]) if drift.get("rules") else None
            state = sim.start_drift(rules, drift.get("error_rate") or 0.0, drift.get("latency_ms") or 0.0)
            out(f"DRIFT MODE: {state} (DELETE /_simulator/drift restores the approved behaviour)")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        _restore_signal_handlers(previous)
    snap = sim.stats.snapshot()
    out(f"{SIMULATOR_NAME} stopped after {snap['requests']} requests "
        f"({snap['total_tokens']} simulated tokens).")
    return 0


def _install_signal_handlers(stop: threading.Event) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals can only be handled in the main thread; the caller stops us another way
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
