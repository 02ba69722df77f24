"""A fake Hugging Face Hub and Ollama registry on 127.0.0.1, serving the few endpoints the real clients call.

Hub (huggingface_hub's HfApi.model_info(files_metadata=True) and hf_hub_download):
  GET  /api/models/<org>/<name>/revision/<rev>?blobs=True   model info with siblings (blobId, lfs.sha256)
  HEAD /<org>/<name>/resolve/<rev>/<path>                   X-Repo-Commit, ETag / X-Linked-Etag, sizes
  GET  /<org>/<name>/resolve/<rev>/<path>                   the bytes
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub's do, which
huggingface_hub turns into its typed errors.
Ollama registry (OCI distribution API):
  GET  /v2/<ns>/<model>/manifests/<tag>, GET /v2/<ns>/<model>/blobs/sha256:<hex>
A test can tamper with what is served (`served`) while the metadata keeps the true digest, or drop a
file's LFS digest, to see the staging refuse.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]
    lfs: set[str]                                   # paths stored in LFS (weights)
    branches: dict[str, str] = field(default_factory=dict)
    served: dict[str, bytes] = field(default_factory=dict)      # overrides: what is actually sent
    no_lfs_digest: set[str] = field(default_factory=set)        # LFS files whose metadata lacks the sha256
    license: str = "apache-2.0"
    gated: bool = False                                         # needs a token (any, here) like a gated repo

    def sibling(self, path: str) -> dict:
        data = self.files[path]
        out = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if path in self.lfs and path not in self.no_lfs_digest:
            out["blobId"] = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()   # the pointer's blob
            out["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        elif path in self.no_lfs_digest:
            out.pop("blobId")
        return out


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.ollama: dict[str, dict[str, bytes]] = {}     # "<ns>/<model>" -> {"manifests/<tag>": ..., "blobs/..": ..}
        self.requests: list[tuple[str, str, dict]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routing
    def _handle(self, h: BaseHTTPRequestHandler, head: bool):
        url = urlparse(h.path)
        self.requests.append((h.command, url.path, dict(h.headers)))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", url.path)
        if m:
            return self._info(h, m.group(1), unquote(m.group(2)))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", url.path)
        if m:
            return self._resolve(h, m.group(1), unquote(m.group(2)), unquote(m.group(3)), head)
        m = re.fullmatch(r"/v2/([^/]+/[^/]+)/(manifests/[^/]+|blobs/sha256:[0-9a-f]{64})", url.path)
        if m and m.group(1) in self.ollama and m.group(2) in self.ollama[m.group(1)]:
            return self._send(h, 200, self.ollama[m.group(1)][m.group(2)], {}, head)
        return self._send(h, 404, b'{"error":"not found"}', {"X-Error-Code": "EntryNotFound"}, head)

    def _commit(self, repo: Repo, rev: str):
        return rev if rev == repo.commit else repo.branches.get(rev)

    def _info(self, h, repo_id: str, rev: str):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository Not Found for url: {h.path}")
        if repo.gated and not h.headers.get("authorization"):
            return self._error(h, 401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                               "to it and be authenticated to access it.")
        commit = self._commit(repo, rev)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        body = {"_id": "x", "id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "disabled": False,
                "gated": False, "downloads": 0, "likes": 0, "tags": [], "cardData": {"license": repo.license},
                "siblings": [repo.sibling(p) for p in sorted(repo.files)]}
        return self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, False)

    def _resolve(self, h, repo_id: str, rev: str, path: str, head: bool):
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository Not Found", head)
        commit = self._commit(repo, rev)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", "Revision Not Found", head)
        if path not in repo.files:
            return self._error(h, 404, "EntryNotFound", "Entry not found", head)
        data = repo.served.get(path, repo.files[path])
        meta = repo.sibling(path)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{meta.get("blobId", "0" * 40)}"',
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if "lfs" in meta:
            headers["X-Linked-Etag"] = f'"{meta["lfs"]["sha256"]}"'
            headers["X-Linked-Size"] = str(len(data))
        return self._send(h, 200, data, headers, head)

    def _error(self, h, status: int, code: str, message: str, head: bool = False):
        return self._send(h, status, json.dumps({"error": message}).encode(),
                          {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}, head)

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict, head: bool):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    # ------------------------------------------------------------------ Ollama
    def add_ollama(self, ref: str, gguf: bytes, file_type: str = "Q4_K_M") -> str:
        """Publish `ref` (ns/model:tag); returns its manifest digest."""
        name, tag = ref.split(":")
        config = json.dumps({"model_format": "gguf", "model_family": "llama", "file_type": file_type}).encode()
        template = b"{{ .Prompt }}"
        blobs = {"config": config, "model": gguf, "template": template}
        digests = {k: "sha256:" + hashlib.sha256(v).hexdigest() for k, v in blobs.items()}
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digests["config"],
                          "size": len(config)},
               "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digests["model"],
                           "size": len(gguf)},
                          {"mediaType": "application/vnd.ollama.image.template", "digest": digests["template"],
                           "size": len(template)}]}
        raw = json.dumps(doc).encode()
        store = self.ollama.setdefault(name, {})
        store[f"manifests/{tag}"] = raw
        for k, v in blobs.items():
            store[f"blobs/{digests[k]}"] = v
        return "sha256:" + hashlib.sha256(raw).hexdigest()
