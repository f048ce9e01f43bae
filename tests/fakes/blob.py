"""Azure Blob Storage, as azure-storage-blob uploads an Azure ML asset: blob properties (HEAD),
single-shot block blob PUT, metadata PUT, listing. Served only behind `proxy.InterceptingProxy`:
the SDK builds `https://<account>.blob.core.windows.net/...` from the datastore, and the proxy
terminates that TLS with the test CA instead of reaching Azure. `blobs` holds
(account, container, name) -> {"data", "metadata"}.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from email.utils import formatdate
from xml.sax.saxutils import escape

from fakes.http import JsonHandler


class BlobState:
    """What the proxy hands the handler as its `server`: the blobs, a lock, the request log."""

    def __init__(self):
        self.blobs: dict[tuple[str, str, str], dict] = {}
        self.requests: list[dict] = []
        self.lock = threading.RLock()

    @property
    def state(self) -> BlobState:
        return self

    def names(self, account: str | None = None) -> list[str]:
        return sorted(f"{c}/{n}" for a, c, n in self.blobs if account in (None, a))


class BlobHandler(JsonHandler):
    """Constructed by the proxy on an intercepted TLS connection; `self.server.state` is a BlobState."""

    def _prepare(self) -> None:
        super()._prepare()
        self.server.requests[-1]["account"] = (self.headers.get("Host") or "").split(".")[0]

    def _common(self, extra: dict | None = None) -> dict:
        return {"x-ms-version": "2023-11-03", "Date": formatdate(usegmt=True), **(extra or {})}

    def _not_found(self, code: str = "BlobNotFound") -> None:
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{code}</Message></Error>'
        self.send(404, body.encode(), self._common({"x-ms-error-code": code}), "application/xml")

    def route(self) -> None:
        state = self.server.state
        host = (self.headers.get("Host") or "").split(":")[0]
        account = host.split(".")[0]
        parts = self.path_only.lstrip("/").split("/", 1)
        container = parts[0]
        name = parts[1] if len(parts) > 1 else ""
        if self.query.get("restype") == "container" and self.query.get("comp") == "list":
            return self._list(account, container)
        key = (account, container, name)
        blob = state.blobs.get(key)
        if self.command == "PUT" and self.query.get("comp") == "metadata":
            if blob is None:
                return self._not_found()
            blob["metadata"] = self._metadata()
            return self.send(200, b"", self._common({"ETag": blob["etag"], "Last-Modified": blob["modified"]}),
                             "application/octet-stream")
        if self.command == "PUT":
            data = self.raw_body
            blob = {"data": data, "metadata": self._metadata(), "etag": f'"0x{time.time_ns():X}"',
                    "modified": formatdate(usegmt=True)}
            state.blobs[key] = blob
            md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 (the wire format)
            return self.send(201, b"", self._common({"ETag": blob["etag"], "Last-Modified": blob["modified"],
                                                     "Content-MD5": md5, "x-ms-request-server-encrypted": "true"}),
                             "application/octet-stream")
        if self.command in ("HEAD", "GET"):
            if blob is None:
                return self._not_found()
            headers = self._common({"ETag": blob["etag"], "Last-Modified": blob["modified"],
                                    "x-ms-blob-type": "BlockBlob", "x-ms-creation-time": blob["modified"],
                                    "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked"})
            headers.update({f"x-ms-meta-{k}": v for k, v in blob["metadata"].items()})
            return self.send(200, blob["data"], headers, "application/octet-stream")
        return self.send(405, b"", self._common(), "application/octet-stream")

    def _metadata(self) -> dict:
        return {k[len("x-ms-meta-"):]: v for k, v in self.headers.items() if k.lower().startswith("x-ms-meta-")}

    def _list(self, account: str, container: str) -> None:
        prefix = self.query.get("prefix", "")
        items = []
        for (a, c, name), blob in sorted(self.server.state.blobs.items()):
            if a == account and c == container and name.startswith(prefix):
                meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in blob["metadata"].items())
                items.append(f"<Blob><Name>{escape(name)}</Name><Properties><Last-Modified>{blob['modified']}"
                             f"</Last-Modified><Etag>{blob['etag']}</Etag><Content-Length>{len(blob['data'])}"
                             f"</Content-Length><BlobType>BlockBlob</BlobType></Properties>"
                             f"<Metadata>{meta}</Metadata></Blob>")
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://{account}'
                f'.blob.core.windows.net/" ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix>'
                f"<Blobs>{''.join(items)}</Blobs><NextMarker /></EnumerationResults>")
        self.send(200, body.encode(), self._common(), "application/xml")
