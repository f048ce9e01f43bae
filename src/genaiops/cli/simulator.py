"""`genaiops simulator`: run the LLM SIMULATOR in the foreground until Ctrl-C or SIGTERM.

Errors a user can cause (bad rules file, unknown use case, port in use) are raised as
`GenaiopsError` subclasses for the main CLI to print and turn into an exit code.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from pathlib import Path

from genaiops.errors import UsageError
from genaiops.simulator.server import SIMULATOR_NAME, SimulatorServer

DEFAULT_PORT = 8765
_USE_CASE = re.compile(r"^[a-z0-9_-]+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 = any free port)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--rules", type=Path, metavar="PATH", help="simulator rules YAML (default: echo replies)"
    )
    source.add_argument(
        "--use-case", metavar="NAME", help="use configs/NAME/simulator.yaml of this repository"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added to every answer (default 0)"
    )
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help="extra delay up to this, fixed per request (default 0)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log method, path, status and duration of each request",
    )


def rules_path_from_args(args: argparse.Namespace) -> Path | None:
    """The rules file named by --rules or --use-case, or None for echo replies."""
    if getattr(args, "rules", None) and getattr(args, "use_case", None):
        raise UsageError("give --rules or --use-case, not both")
    if getattr(args, "rules", None):
        return Path(args.rules)
    name = getattr(args, "use_case", None)
    if not name:
        return None
    if not _USE_CASE.match(name):
        raise UsageError(f"use case name {name!r} may use only a-z, 0-9, '_' and '-'")
    from genaiops.workspace.repo import find_repo_root

    root = find_repo_root()
    path = root / "configs" / name / "simulator.yaml"
    if not path.is_file():
        have = sorted(p.parent.name for p in (root / "configs").glob("*/simulator.yaml"))
        raise UsageError(
            f"{path} does not exist",
            hint=f"use cases with simulator rules: {', '.join(have) or 'none'}; or pass --rules PATH",
        )
    return path


def banner(sim: SimulatorServer, rules_path: Path | None) -> str:
    rules = f"{rules_path} ({sim.rules.summary()})" if rules_path else "none (echo replies)"
    lines = [
        "=" * 72,
        f" {SIMULATOR_NAME}: an LLM SIMULATOR, NOT A REAL MODEL.",
        " Answers are canned by rules, deterministic, for tests and demos only.",
        "=" * 72,
        f"  rules         {rules}",
        f"  latency       {sim.latency_ms:g} ms"
        + (f" + up to {sim.jitter_ms:g} ms jitter" if sim.jitter_ms else ""),
        f"  OpenAI        base_url={sim.openai_base_url}   (any non-empty api key)",
        f"  Azure OpenAI  api_base={sim.azure_endpoint}   (any deployment, any api-version)",
        f"  control       {sim.url}/_simulator/stats  /_simulator/faults  /_simulator/reset",
    ]
    if sim.host not in ("127.0.0.1", "localhost", "::1"):
        lines.append(f"  WARNING       listening on {sim.host}, not loopback only")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    """Serve in the foreground; Ctrl-C or SIGTERM stops cleanly and returns 0."""
    rules_path = rules_path_from_args(args)
    sim = SimulatorServer(
        rules_path,
        latency_ms=args.latency_ms,
        host=args.host,
        port=args.port,
        jitter_ms=getattr(args, "jitter_ms", 0.0),
        verbose=getattr(args, "verbose", False),
    )
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        sim.start()
        print(banner(sim, rules_path), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        _restore_signal_handlers(previous)
    snap = sim.stats.snapshot()
    print(
        f"{SIMULATOR_NAME} stopped after {snap['requests']} requests ({snap['total_tokens']} simulated tokens).",
        flush=True,
    )
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
