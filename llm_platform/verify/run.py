"""One gate run: probe, calibrate, then offer the profile's load and collect every request's timings."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from . import CannotRun
from .client import Endpoint, Result, calibrate, make_client, probe, prompt_text, send
from .schedule import MAX_REQUESTS, arrivals
from .spec import GateSpec, Profile

MIN_REQUEST_TIMEOUT_S = 30.0


@dataclass
class Run:
    results: list[Result]
    wall_s: float
    words_per_token: float
    notes: list[str] = field(default_factory=list)


def request_timeout(spec: GateSpec, profile: Profile) -> float:
    """Five times what the plan says a request takes, never under 30 s: slow is measured, hung is an error."""
    tp = spec.throughput
    ttft = tp.get("ttft_seconds") or 1.0
    tpot = tp.get("tpot_seconds") or (1.0 / tp["decode_tokens_per_s_single"]
                                      if tp.get("decode_tokens_per_s_single") else 0.1)
    return max(MIN_REQUEST_TIMEOUT_S, 5 * (ttft + (profile.output_tokens or 0) * tpot))


def max_connections(spec: GateSpec) -> int:
    """Enough connections that the client never queues what the servers would take: every replica's batch,
    at the autoscaling maximum, four times over."""
    d = spec.deployment
    return max(64, 4 * int(d.get("concurrency") or 8) * int((d.get("replicas") or {}).get("max") or 1))


async def drive(spec: GateSpec, ep: Endpoint, profile: Profile, seed: int = 0,
                max_requests: int = MAX_REQUESTS) -> Run:
    timeout = request_timeout(spec, profile)
    rng = random.Random(seed)
    notes: list[str] = []
    async with make_client(ep, timeout, max_connections(spec)) as client:
        await probe(client, ep)
        ratio, note = await calibrate(client, ep, profile.prompt_tokens, rng, timeout)
        if note:
            notes.append(note)
        words = max(1, round(profile.prompt_tokens * ratio))
        start = time.perf_counter()
        if profile.mode == "poisson":
            results = await _open_loop(client, ep, profile, words, rng, seed, timeout, start, max_requests)
        else:
            results = await _closed_loop(client, ep, profile, words, rng, timeout, start, max_requests)
        wall = time.perf_counter() - start
    if results and all(r.status in (401, 403) for r in results):
        raise CannotRun(f"auth refused: every request to {ep.base_url} answered HTTP {results[0].status}")
    return Run(results, wall, ratio, notes)


async def _open_loop(client, ep: Endpoint, profile: Profile, words: int, rng: random.Random, seed: int,
                     timeout: float, start: float, max_requests: int) -> list[Result]:
    tasks = []
    for a in arrivals(profile, seed, max_requests):
        delay = start + a.at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # the prompt is drawn before the wait-free send, so drawing never delays an arrival
        tasks.append(asyncio.create_task(send(client, ep, prompt_text(rng, words, ep.api), profile.output_tokens,
                                              a.phase, time.perf_counter() - start, timeout)))
    return list(await asyncio.gather(*tasks))


async def _closed_loop(client, ep: Endpoint, profile: Profile, words: int, rng: random.Random,
                       timeout: float, start: float, max_requests: int) -> list[Result]:
    results: list[Result] = []
    while time.perf_counter() - start < profile.duration_s and len(results) < max_requests:
        results.append(await send(client, ep, prompt_text(rng, words, ep.api), profile.output_tokens, "steady",
                                  time.perf_counter() - start, timeout))
    return results


def run(spec: GateSpec, ep: Endpoint, profile: Profile, seed: int = 0, max_requests: int = MAX_REQUESTS) -> Run:
    return asyncio.run(drive(spec, ep, profile, seed, max_requests))


def endpoint_for(spec: GateSpec, url: str, api_key: str, api: str | None, ca_file: str | None) -> Endpoint:
    from .client import base_url
    kind = "embeddings" if spec.task == "embed" else (api or "chat")
    if spec.task == "embed" and api not in (None, "embeddings"):
        raise CannotRun(f"{spec.name} is an embedding model: --api {api} does not apply (it is judged on /embeddings)")
    return Endpoint(base_url(url), spec.name, api_key, kind, spec.runtime, ca_file)
