"""When requests go out: a ramp from zero to the stated rate, then a steady Poisson phase.

Arrivals are a Poisson process conditioned on its count: the steady phase sends exactly
round(rate x steady seconds) requests at independent uniform times (the order statistics of a Poisson
process with that many events), so the offered rate is the stated rate, not a random draw around it,
while gaps stay exponential-like and bursts happen as they do in real traffic. The ramp's intensity
grows linearly from 0 to the rate (half the rate on average), its requests are sent but not judged:
they warm caches, CUDA graphs and connection pools, and let autoscalers see the load coming.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .spec import Profile

MAX_REQUESTS = 100_000      # hard bound on what one run may send, whatever the rate and duration


@dataclass(frozen=True)
class Arrival:
    at: float           # seconds after the start
    phase: str          # "ramp" | "steady"


def arrivals(profile: Profile, seed: int = 0, max_requests: int = MAX_REQUESTS) -> list[Arrival]:
    """The open-loop schedule of a Poisson profile (empty for a sequential one)."""
    if profile.mode != "poisson":
        return []
    rng = random.Random(seed)
    rate, ramp, steady = profile.requests_per_second, profile.ramp_s, profile.steady_s
    out: list[Arrival] = []
    n_ramp = round(rate * ramp / 2)
    # intensity rate*t/ramp on [0, ramp]: cumulative rate*t^2/(2 ramp); invert uniform draws of it
    for u in sorted(rng.random() for _ in range(n_ramp)):
        out.append(Arrival(ramp * math.sqrt(u), "ramp"))
    n_steady = max(1, round(rate * steady))
    for u in sorted(rng.random() for _ in range(n_steady)):
        out.append(Arrival(ramp + steady * u, "steady"))
    return out[:max_requests]
