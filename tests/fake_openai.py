"""A fake OpenAI-compatible server on 127.0.0.1 for the deploy gate's tests: asyncio, HTTP/1.1 keep-alive,
SSE streaming with chunked transfer encoding, bearer-key auth, usage in the last chunk (as vLLM sends it
with stream_options.include_usage). Its timing emulates a deployment: the first token after `ttft`
seconds, then one token every `tpot` seconds (scheduled from the request's start, so sleeps do not drift).

`FakeServer` runs it in its own process (`python -m tests.fake_openai`), as a real server would be: the
gate's client and the server then never wait for each other's interpreter lock, which on a busy machine
would show up as latency that neither of them has. `FakeOpenAI` is the in-process server itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class FakeOpenAI:
    def __init__(self, model: str, api_key: str, ttft: float, tpot: float, ssl_context: ssl.SSLContext | None = None,
                 template_tokens: int = 12, record: Path | None = None):
        self.model, self.api_key, self.ttft, self.tpot = model, api_key, ttft, tpot
        self.ssl_context, self.template_tokens = ssl_context, template_tokens
        self.requests: list[dict] = []      # bodies of generation/embedding requests, for assertions
        self.record = record                # and, one JSON line each, in this file
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    # --- lifecycle
    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.ssl_context), self.loop).result(5)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self._server.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/v1"

    # --- HTTP
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self._handle(method, path, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _send(writer, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)

    async def _handle(self, method, path, headers, body, writer) -> None:
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self._send(writer, 401, {"error": {"message": "invalid api key"}})
            return
        if method == "GET" and path == "/v1/models":
            self._send(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
            return
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            self._send(writer, 404, {"error": {"message": "not found"}})
            return
        req = json.loads(body)
        self.requests.append(req)
        if self.record:
            with open(self.record, "a", encoding="utf-8") as f:
                f.write(json.dumps(req) + "\n")
        t0 = time.perf_counter()
        prompt = req["messages"][-1]["content"] if "messages" in req else req.get("prompt") or req.get("input")
        prompt_tokens = len(prompt.split()) + self.template_tokens
        if path == "/v1/embeddings":
            await asyncio.sleep(self.ttft)
            self._send(writer, 200, {"object": "list", "data": [{"index": 0, "embedding": [0.0] * 8}],
                                     "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
            return
        chat = "messages" in req
        n = int(req.get("max_tokens") or 16)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

        def event(payload) -> bytes:
            data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        for i in range(n):
            delay = t0 + self.ttft + i * self.tpot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            choice = {"index": 0, "delta": {"content": " tok"}} if chat else {"index": 0, "text": " tok"}
            writer.write(event({"object": "chat.completion.chunk" if chat else "text_completion",
                                "model": self.model, "choices": [choice]}))
            await writer.drain()
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        writer.write(event({"model": self.model, "choices": [], "usage": usage}) + event("[DONE]") + b"0\r\n\r\n")
        await writer.drain()


class FakeServer:
    """FakeOpenAI in a child process; `url` and `requests` as on FakeOpenAI."""

    def __init__(self, model: str, api_key: str, ttft: float, tpot: float, cert: Path | None = None,
                 key: Path | None = None):
        self._dir = tempfile.TemporaryDirectory(prefix="fake-openai-")
        self._record = Path(self._dir.name) / "requests.jsonl"
        self._argv = [sys.executable, "-m", "tests.fake_openai", "--model", model, "--ttft", repr(ttft),
                      "--tpot", repr(tpot), "--record", str(self._record)]
        if cert and key:
            self._argv += ["--cert", str(cert), "--key", str(key)]
        self._env = {**os.environ, "FAKE_OPENAI_KEY": api_key}   # not on the command line
        self.tls = cert is not None

    def __enter__(self) -> FakeServer:
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(self._argv, cwd=root, env=self._env, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line.startswith("port "):
            self._proc.kill()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._proc.stdout.close()
        self._dir.cleanup()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict]:
        if not self._record.exists():
            return []
        return [json.loads(line) for line in self._record.read_text(encoding="utf-8").splitlines() if line]


def _serve() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--ttft", type=float, required=True)
    p.add_argument("--tpot", type=float, required=True)
    p.add_argument("--record", type=Path)
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    a = p.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    fake = FakeOpenAI(a.model, os.environ["FAKE_OPENAI_KEY"], a.ttft, a.tpot, ssl_context=ctx, record=a.record)

    async def main():
        server = await asyncio.start_server(fake._conn, "127.0.0.1", 0, ssl=ctx)
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    _serve()
