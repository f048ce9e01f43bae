"""A container registry on 127.0.0.1 speaking the OCI distribution API as docker 20.10 uses it
(push: blob HEAD / upload POST-PATCH-PUT / manifest PUT; pull: manifest and blob GET). dockerd treats
127.0.0.0/8 registries as insecure (plain HTTP) by default.

Every request needs Basic credentials, as `az acr login` leaves them in docker's config: a push
without the pipeline's registry login fails exactly as it would against ACR. `pushed` records each
manifest PUT: (repository, reference, digest).
"""

from __future__ import annotations

import base64
import hashlib
import uuid

from fakes.http import FakeServer, JsonHandler

USER = "00000000-0000-0000-0000-000000000000"  # the user name `az acr login` gives docker
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")


class FakeRegistry(FakeServer):
    def __init__(self, token: str):
        super().__init__(_Handler)
        self.token = token
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}  # (repo, tag|digest) -> (body, type)
        self.pushed: list[tuple[str, str, str]] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_port}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(JsonHandler):
    server: FakeRegistry

    def route(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{self.server.token}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self.send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                             {"WWW-Authenticate": 'Basic realm="fake-acr"'})
        path = self.path_only
        if path in ("/v2", "/v2/"):
            return self.send(200, {})
        name, kind, ref = self._split(path)
        if kind == "blobs" and ref == "uploads":
            return self._start_upload(name)
        if kind == "blobs" and ref.startswith("uploads/"):
            return self._upload(name, ref.split("/", 1)[1])
        if kind == "blobs":
            data = self.server.blobs.get(ref)
            if data is None:
                return self.send(404, {"errors": [{"code": "BLOB_UNKNOWN"}]})
            return self.send(200, data, {"Docker-Content-Digest": ref}, "application/octet-stream")
        if kind == "manifests":
            return self._manifest(name, ref)
        return self.send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})

    @staticmethod
    def _split(path: str) -> tuple[str, str, str]:
        rest = path[len("/v2/"):]
        for kind in ("/blobs/", "/manifests/"):
            if kind in rest:
                name, ref = rest.split(kind, 1)
                return name, kind.strip("/"), ref.rstrip("/")
        return rest, "", ""

    def _start_upload(self, name: str) -> None:
        upload = uuid.uuid4().hex
        self.server.uploads[upload] = bytearray()
        self.send(202, None, {"Location": f"/v2/{name}/blobs/uploads/{upload}", "Docker-Upload-UUID": upload,
                              "Range": "0-0"})

    def _upload(self, name: str, upload: str) -> None:
        buffer = self.server.uploads.get(upload)
        if buffer is None:
            return self.send(404, {"errors": [{"code": "BLOB_UPLOAD_UNKNOWN"}]})
        buffer.extend(self._body_bytes())
        if self.command == "PATCH":
            return self.send(202, None, {"Location": f"/v2/{name}/blobs/uploads/{upload}",
                                         "Docker-Upload-UUID": upload, "Range": f"0-{max(len(buffer) - 1, 0)}"})
        digest = self.query.get("digest", "")
        data = bytes(self.server.uploads.pop(upload))
        if _digest(data) != digest:
            return self.send(400, {"errors": [{"code": "DIGEST_INVALID"}]})
        self.server.blobs[digest] = data
        self.send(201, None, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    def _body_bytes(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.raw_body
        data = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return bytes(data)
            data.extend(self.rfile.read(size))
            self.rfile.readline()

    def _manifest(self, name: str, ref: str) -> None:
        if self.command == "PUT":
            body = self._body_bytes()
            digest = _digest(body)
            kind = self.headers.get("Content-Type", MANIFEST_TYPES[0])
            self.server.manifests[(name, ref)] = (body, kind)
            self.server.manifests[(name, digest)] = (body, kind)
            self.server.pushed.append((name, ref, digest))
            return self.send(201, None, {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest})
        found = self.server.manifests.get((name, ref))
        if found is None:
            return self.send(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        body, kind = found
        self.send(200, body, {"Docker-Content-Digest": _digest(body)}, kind)
