"""The environment an engine process starts with: an allow-list, never the orchestrator's whole.

Engine processes run flow code, and flow code can return anything it can read. The orchestrator's
environment holds the audit key (`GENAIOPS_AUDIT_KEY`, which signs approvals), cloud credentials
and whatever else the user exported; a flow that returned one would put it in the ledger and the
reports. So an engine process gets only what running a flow needs: the system's basics (PATH,
locale, temp folder, proxies and CA bundles), the engines' own settings (`PF_*`, `PROMPTFLOW_*`,
`GENAIOPS_*` tuning), and, per job, the variables the config declares or the flow names by literal
name (`BatchJob.passed_variables`). Never the audit key or the trust folder's location, and no
secret-looking `GENAIOPS_*` variable. HOME is the command's own (`command_home()`), so what an
engine keeps under HOME (promptflow's connection store, keyring and run folders) is never shared
with another command or the user's own work. Where the machine allows it, they also start where
the trust folder (the audit key file) is an empty, locked tmpfs (`sandboxed`, docs/trust.md).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from genaiops.secrets import is_secret_name

AUDIT_KEY_ENV = "GENAIOPS_AUDIT_KEY"
# never in an engine process, whatever a flow names or a config declares
WITHHELD = frozenset({AUDIT_KEY_ENV, "GENAIOPS_TRUST_DIR"})

_NAMES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "USER", "LOGNAME", "SHELL", "TERM",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING",
    "VIRTUAL_ENV", "PYTHON_KEYRING_BACKEND",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "all_proxy",
})
_PREFIXES = ("LC_", "PF_", "PROMPTFLOW_", "APPLICATIONINSIGHTS_", "GENAIOPS_")


def allowed(name: str) -> bool:
    """Whether the orchestrator's variable `name` reaches engine processes by default."""
    if name in WITHHELD:
        return False
    if name in _NAMES:
        return True
    return name.startswith(_PREFIXES) and not is_secret_name(name)


def engine_environment(extra: dict[str, str] | None = None,
                       environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `environ` (default: this process's), plus `extra` (which may
    not bring back a withheld variable)."""
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if allowed(name)}
    env.update({k: str(v) for k, v in (extra or {}).items() if k not in WITHHELD})
    return env


def passed_values(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of `names` (a job's `passed_variables`) that are set here, withheld ones never;
    secret-looking ones are added to the redactor (a flow may echo what it reads)."""
    from genaiops.secrets import REDACTOR

    environ = os.environ if environ is None else environ
    values = {name: environ[name] for name in names if name in environ and name not in WITHHELD}
    REDACTOR.add_env(values)
    return values


HOME_ENV = "GENAIOPS_ENGINE_HOME"  # set in engine processes: the command's private HOME
KEEP_ENV = "GENAIOPS_KEEP_ENGINE_HOME"  # "1": keep it after the command (to read its run folders)

_home: Path | None = None  # made once a process
_HOME_LOCK = threading.Lock()


def command_home() -> Path:
    """This command's private HOME for its engine processes (they get it as HOME and as
    `GENAIOPS_ENGINE_HOME`); made on first use, removed when the process that made it exits."""
    global _home
    inside = os.environ.get(HOME_ENV)
    if inside:
        return Path(inside)
    with _HOME_LOCK:
        if _home is None:
            if os.environ.get(KEEP_ENV) == "1":
                _home = Path(tempfile.mkdtemp(prefix="genaiops-home-kept-"))  # 0700
            else:  # owner-tagged: the next command's sweep removes it if this one is killed
                from genaiops.workspace.sweep import owner_tag

                _home = Path(tempfile.mkdtemp(prefix=f"genaiops-home-{owner_tag()}-"))  # 0700
                atexit.register(shutil.rmtree, _home, True)
        return _home


def home_environment() -> dict[str, str]:
    """HOME for an engine process: the command's private one (promptflow keeps its connection
    store, keyring and run folders there; nothing an engine writes under HOME is shared)."""
    home = str(command_home())
    return {"HOME": home, HOME_ENV: home}


# -- the sandbox: the trust folder hidden from engine processes --------------------------------

# run by `sh` in the engine process's own mount namespace: an empty tmpfs over each path before
# the `--`; then the command after it, in a user namespace of its own (`$0` is unshare), where
# those mounts are locked: not even root there can unmount them to see what they cover
_HIDE_SCRIPT = ('for p in "$@"; do shift; if [ "$p" = -- ]; then exec "$0" --user --map-current-user '
                '--mount --propagation private -- "$@"; fi; '
                'mount -t tmpfs -o ro,size=4k,mode=000 genaiops-hidden "$p" || exit 97; done; exit 98')
_sandbox: list[str] | None = None  # probed once a process
_SANDBOX_LOCK = threading.Lock()


def _works(base: list[str]) -> bool:
    import subprocess

    with tempfile.TemporaryDirectory(prefix="genaiops-sandbox-") as folder:
        try:
            (Path(folder) / "hidden").write_text("x")
            done = subprocess.run([*base, "sh", "-c", _HIDE_SCRIPT, base[0], folder, "--", "sh", "-c",
                                   f'test ! -e {folder}/hidden && ! umount {folder} 2>/dev/null'],
                                  capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def sandbox_base() -> list[str]:
    """How this machine gives a process its own mount namespace: `unshare --mount` (root, or
    CAP_SYS_ADMIN), else `unshare -r --mount` (unprivileged user namespaces); [] when neither
    works (a container without those rights): then only the environment and redaction hold."""
    global _sandbox
    with _SANDBOX_LOCK:
        if _sandbox is None:
            unshare = shutil.which("unshare")
            candidates = ([[unshare, "--mount", "--propagation", "private"],
                           [unshare, "-r", "--mount", "--propagation", "private"]] if unshare else [])
            none: list[str] = []
            _sandbox = next((base for base in candidates if _works(base)), none)
        return list(_sandbox)


def hidden_paths() -> list[Path]:
    """What engine processes must not read: the trust folder (audit key, chain anchors), unless
    it holds what they need (the working folder, temp folder, state folder or Python itself)."""
    import sys

    from genaiops.workspace import trust_dir

    needed = [Path.cwd(), Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.executable).parent,
              *([Path(os.environ["GENAIOPS_STATE_DIR"])] if os.environ.get("GENAIOPS_STATE_DIR") else [])]
    needed = [path.resolve() for path in needed]
    return [path for path in [trust_dir()] if path.is_dir()
            and not any(path == other or path in other.parents for other in needed)]


def sandboxed(command: list[str]) -> list[str]:
    """`command` started where the trust folder reads as an empty, unreadable folder, where the
    machine allows it (`sandbox_base`); else `command` as it is."""
    hidden = [str(path) for path in hidden_paths()]
    base = sandbox_base() if hidden else []
    if not base:
        return list(command)
    return [*base, "sh", "-c", _HIDE_SCRIPT, base[0], *hidden, "--", *command]
