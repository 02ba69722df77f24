"""Streaming OpenAI-compatible requests on httpx, timed the way serving benchmarks time them.

- chat (`/chat/completions`) or completions (`/completions`), `stream: true` with
  `stream_options: {include_usage: true}`: token counts come from the server's own `usage` (its
  tokenizer), never from a client-side guess. A server that sends no usage is counted by content
  chunks, and the report says so.
- embeddings (`/embeddings`): one non-streaming request; its latency is its time to the answer.
- TTFT: from sending the request to the first chunk carrying text. TPOT (per request, as vLLM's
  benchmark_serving defines it): (last token time - first token time) / (output tokens - 1).
- On vLLM the request asks for exactly the planned output (`min_tokens` = `max_tokens`, `ignore_eos`),
  as its benchmarks do, so every request costs what the plan assumed; other runtimes get `max_tokens`.
- Prompts: common English words after a random nonce (no two prompts share a prefix, so the prefix
  cache cannot flatter TTFT), their length calibrated against the server's `usage.prompt_tokens`.
"""
from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from dataclasses import dataclass, field

import httpx

from . import CannotRun

# ~1 token each in the Llama 3, Qwen 2.5 and Mistral tokenizers (with the leading space)
WORDS = ("the of and to in is for that on with as was by at from this are be or have an not it which one all "
         "they their has more were been can but other its when also new time some would two first into only after "
         "over most these such people may then many between out under about through like both them where during "
         "state well world three year part each city used system since long work make while game made number "
         "group later against high including house second found known life name just same during until home "
         "school last order public early water small four five place being area back power place family end "
         "great local real light short open line river field model point value data table report market level").split()
INSTRUCTION = {"chat": "\nSummarise the text above in detail.", "completions": "\nSummary:",
               "embeddings": ""}


@dataclass
class Endpoint:
    base_url: str                   # ends in /v1
    model: str                      # the served model name (the deployment name)
    api_key: str
    api: str = "chat"               # chat | completions | embeddings
    runtime: str = "vllm"
    ca_file: str | None = None

    def url(self, route: str) -> str:
        return f"{self.base_url.rstrip('/')}/{route}"


@dataclass
class Result:
    phase: str
    started: float                  # seconds after the run's start
    ok: bool = False
    status: int | None = None
    error: str | None = None     # "http 503", "timeout", "connection", "stream", ...
    ttft: float | None = None
    e2e: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    usage_reported: bool = False
    last_token: float = 0.0         # seconds after sending: the last chunk carrying text
    itl: list[float] = field(default_factory=list, repr=False)

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.e2e is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.last_token - self.ttft) / (self.output_tokens - 1)


def base_url(url: str) -> str:
    """The endpoint as exported (https://<name>.<domain>/v1); a bare host gets /v1."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CannotRun(f"--endpoint {url!r} is not an http(s) URL: give the deployment's endpoint, "
                        "e.g. https://llama-8b.llm.internal.example.com/v1 (stack output `endpoints`)")
    return url.rstrip("/") if parsed.path not in ("", "/") else url.rstrip("/") + "/v1"


def make_client(ep: Endpoint, timeout_s: float, max_connections: int) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if ep.ca_file:
        try:
            if ep.ca_file.startswith("env:"):
                from .spec import _env_value
                verify = ssl.create_default_context(cadata=_env_value(ep.ca_file))
            else:
                verify = ssl.create_default_context(cafile=ep.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CannotRun(f"--ca-file {ep.ca_file}: cannot load it as a PEM CA bundle ({exc})") from None
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {ep.api_key}", "User-Agent": "llm-platform-verify"},
        verify=verify, http2=False, trust_env=False,
        timeout=httpx.Timeout(connect=10.0, read=timeout_s, write=30.0, pool=None),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))


def _refused(status: int, url: str) -> CannotRun:
    return CannotRun(f"auth refused: {url} answered HTTP {status}; the key in --api-key-env/--api-key-secret is "
                     "not one of the stack's client keys (Secrets Manager llm-platform/<stack>/clients/<client>)")


async def probe(client: httpx.AsyncClient, ep: Endpoint) -> list[str]:
    """GET /models: reachable, key accepted, the model served. Any failure is CannotRun (exit 2)."""
    url = ep.url("models")
    try:
        resp = await client.get(url, timeout=15.0)
    except httpx.HTTPError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise CannotRun(f"TLS: {url} presents a certificate this client does not trust ({exc}): pass --ca-file "
                            "with the internal CA (stack output internal_ca_certificate_pem)") from None
        raise CannotRun(f"endpoint unreachable: {url}: {type(exc).__name__}: {exc or 'no answer'}") from None
    if resp.status_code in (401, 403):
        raise _refused(resp.status_code, url)
    if resp.status_code != 200:
        raise CannotRun(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        ids = [m["id"] for m in resp.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise CannotRun(f"{url} is not an OpenAI-compatible /v1/models answer: {resp.text[:200]!r}") from None
    if ep.model not in ids:
        raise CannotRun(f"{url} serves {', '.join(ids) or 'no model'}, not {ep.model!r}: wrong --endpoint or --model")
    return ids


def prompt_text(rng: random.Random, words: int, api: str) -> str:
    nonce = f"{rng.getrandbits(64):016x}"
    return f"[{nonce}] " + " ".join(rng.choice(WORDS) for _ in range(max(1, words))) + INSTRUCTION[api]


def _body(ep: Endpoint, prompt: str, output_tokens: int | None) -> tuple[str, dict]:
    if ep.api == "embeddings":
        return "embeddings", {"model": ep.model, "input": prompt}
    body: dict = {"model": ep.model, "max_tokens": output_tokens, "stream": True,
                  "stream_options": {"include_usage": True}, "temperature": 0.0}
    if ep.runtime == "vllm":
        body.update(min_tokens=output_tokens, ignore_eos=True)
    if ep.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        return "chat/completions", body
    body["prompt"] = prompt
    return "completions", body


def _text_of(chunk: dict, api: str) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    if api == "chat":
        return (c.get("delta") or {}).get("content") or ""
    return c.get("text") or ""


async def send(client: httpx.AsyncClient, ep: Endpoint, prompt: str, output_tokens: int | None,
               phase: str, started: float, deadline_s: float) -> Result:
    """One request, timed; never raises for what the server or the network does."""
    res = Result(phase=phase, started=started)
    try:
        await asyncio.wait_for(_send(client, ep, prompt, output_tokens, res), timeout=deadline_s)
    except TimeoutError:
        res.ok, res.error = False, "timeout"
    except httpx.TimeoutException:
        res.ok, res.error = False, "timeout"
    except httpx.TransportError as exc:
        res.ok, res.error = False, f"connection: {type(exc).__name__}"
    except (ValueError, KeyError) as exc:
        res.ok, res.error = False, f"stream: {type(exc).__name__}"
    return res


async def _send(client: httpx.AsyncClient, ep: Endpoint, prompt: str, output_tokens: int | None,
                res: Result) -> None:
    route, body = _body(ep, prompt, output_tokens)
    t0 = time.perf_counter()
    if ep.api == "embeddings":
        resp = await client.post(ep.url(route), json=body)
        res.status = resp.status_code
        if resp.status_code != 200:
            res.error = f"http {resp.status_code}"
            return
        data = resp.json()
        res.e2e = res.ttft = time.perf_counter() - t0
        usage = data.get("usage") or {}
        res.prompt_tokens, res.usage_reported = usage.get("prompt_tokens"), "prompt_tokens" in usage
        res.ok = bool(data.get("data"))
        res.error = None if res.ok else "stream: no embedding"
        return
    chunks = 0
    usage: dict = {}
    last = None
    async with client.stream("POST", ep.url(route), json=body) as resp:
        res.status = resp.status_code
        if resp.status_code != 200:
            await resp.aread()
            res.error = f"http {resp.status_code}"
            return
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                res.error = "stream: server error event"
                return
            now = time.perf_counter() - t0
            if _text_of(chunk, ep.api):
                chunks += 1
                if res.ttft is None:
                    res.ttft = now
                elif last is not None:
                    res.itl.append(now - last)
                last = now
            if chunk.get("usage"):
                usage = chunk["usage"]
    res.e2e = time.perf_counter() - t0
    if res.ttft is None:
        res.error = "stream: no tokens"
        return
    res.last_token = last or res.ttft
    res.usage_reported = "completion_tokens" in usage
    res.output_tokens = usage.get("completion_tokens", chunks)
    res.prompt_tokens = usage.get("prompt_tokens")
    res.ok = True


async def calibrate(client: httpx.AsyncClient, ep: Endpoint, prompt_tokens: int, rng: random.Random,
                    deadline_s: float) -> tuple[float, str | None]:
    """Words per token of this server's tokenizer (and template), from one short request's usage.

    Returns (words per token, a note or None). Failures here are CannotRun: a server that cannot answer one
    request cannot be judged under load."""
    words = prompt_tokens
    res = await send(client, ep, prompt_text(rng, words, ep.api), 1 if ep.api != "embeddings" else None,
                     "calibration", 0.0, deadline_s)
    if res.status in (401, 403):
        raise _refused(res.status, ep.url(ep.api))
    if not res.ok:
        raise CannotRun(f"the first request to {ep.base_url} failed ({res.error}): the deployment is not serving")
    if not res.prompt_tokens:
        return 1.0, "the server reported no usage.prompt_tokens: prompts are sized at one word per token"
    return words / res.prompt_tokens, None
