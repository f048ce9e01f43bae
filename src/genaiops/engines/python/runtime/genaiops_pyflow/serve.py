"""The serving image's HTTP server (standard library only), the same contract as every engine's:

    GET  /health  -> 200 {"status": "healthy"} once the flow has loaded
    POST /score   -> 200 {<output>: value, ...} for a JSON object of inputs;
                     400 for a body that is not one, 500 {"error": ...} when the flow failed

Started by `python -m genaiops_pyflow.serve` (port $PORT, default 8080). The flow, its entry and the
served variant's parameters are in $GENAIOPS_FLOW_DIR (`genaiops-flow.json`); the connections
come from the `<CONN>_<KEY>` variables set at container start (defaults without secrets baked in).
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from genaiops_pyflow.entry import call, error_text, load

SERVE_FILE = "genaiops-flow.json"
MAX_BODY = 10 * 2**20


def make_server(flow_dir: Path, host: str, port: int) -> ThreadingHTTPServer:
    spec = json.loads((flow_dir / SERVE_FILE).read_text(encoding="utf-8"))
    function = load(flow_dir, spec["entry"])
    inputs, params = list(spec["inputs"]), dict(spec.get("params") or {})

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/health":
                self._reply(200, {"status": "healthy"})
            else:
                self._reply(404, {"error": "not found: use POST /score or GET /health"})

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            if self.path != "/score":
                self._reply(404, {"error": "not found: use POST /score or GET /health"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(min(length, MAX_BODY)) or b"null")
            except ValueError:
                self._reply(400, {"error": "the body is not JSON"})
                return
            if not isinstance(body, dict):
                self._reply(400, {"error": "send the inputs as one JSON object"})
                return
            missing = [name for name in inputs if name not in body]
            if missing:
                self._reply(400, {"error": f"missing inputs {missing}"})
                return
            try:
                self._reply(200, call(function, {n: body[n] for n in inputs}, params))
            except Exception as exc:  # the model call or the flow failed: say what, no traceback
                self._reply(500, {"error": error_text(exc)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
            return

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    server = make_server(Path(os.environ.get("GENAIOPS_FLOW_DIR", "/app/flow")),
                         os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080")))
    server.serve_forever()


if __name__ == "__main__":
    main()
