"""Seeded random numbers for the stochastic aggregators (pcgrad, gradvac, graddrop, rlw).

Each aggregator owns one :class:`SeededRandom`; it never touches torch's global RNG, and its
generator states are part of the aggregator's ``state_dict`` so a resumed run draws the same
numbers it would have drawn without the restart.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch


class SeededRandom:
    """One ``torch.Generator`` per device type, each seeded with ``seed`` at first use."""

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        device = torch.device(device)
        key = device.type
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return self._generators[key]

    def permutations(self, num_tasks: int, include_self: bool) -> torch.Tensor:
        """Per-task random orders of the other tasks: [T, T-1] int64 (CPU).

        Row i lists the tasks j != i in random order. ``include_self=True`` draws a permutation
        of all T tasks and drops i (PCGrad's convention); ``False`` permutes the T-1 others.
        """
        gen = self.generator("cpu")
        rows = []
        for i in range(num_tasks):
            others = torch.tensor([j for j in range(num_tasks) if j != i], dtype=torch.long)
            if include_self:
                perm = torch.randperm(num_tasks, generator=gen)
                rows.append(perm[perm != i])
            else:
                rows.append(others[torch.randperm(num_tasks - 1, generator=gen)])
        if num_tasks == 1:
            return torch.zeros(1, 0, dtype=torch.long)
        return torch.stack(rows)

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "states": {key: gen.get_state() for key, gen in self._generators.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self._generators = {}
        for key, gen_state in state["states"].items():
            device = torch.device(key)
            if device.type == "cuda" and not torch.cuda.is_available():
                continue  # resumed on a machine without that device; reseeded on first use
            self.generator(device).set_state(gen_state)


def derive_seed(run_seed: int, stream: str) -> int:
    """A seed for one random stream of a run, e.g. ``derive_seed(3, "critic")``.

    Different run seeds give different seeds, and so do different stream names within one run
    (the actor's and the critic's aggregator never draw the same numbers). Stable across
    Python sessions and platforms (SHA-256, not ``hash``). Returns an int in [0, 2**63).
    """
    if not isinstance(run_seed, int) or isinstance(run_seed, bool):
        raise ValueError(f"run_seed must be an int, got {run_seed!r}")
    digest = hashlib.sha256(f"{run_seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
