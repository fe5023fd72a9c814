"""Initial weights of the networks: the schemes a config can pick.

``torch``       PyTorch's ``nn.Linear`` default: weights and biases from
                U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Our default until 2026-12.
``he-uniform``  the reference MT-SAC's (metaworld-algorithms, Flax ``he_uniform`` and
                ``zeros``): weights from U(-sqrt(6/fan_in), sqrt(6/fan_in)) (variance 2/fan_in),
                biases zero.
``orthogonal``  BRC's (naumix/BiggerRegularizedCategorical, ``jaxrl/networks.py``
                ``default_init``: Flax ``orthogonal(sqrt(2))``, biases zero): each weight
                matrix [out, in] a random orthogonal one times sqrt(2); a stack of per-task
                matrices [T, out, in] gets one per task.

The output layer (head) can be drawn apart from the hidden layers: a head bound ``h`` draws its
weights and biases from U(-h, h), as the reference does for the policy head (h = 1e-3) and the
Q head (h = 3e-3). ``None`` keeps the head on the scheme of the hidden layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

INIT_SCHEMES = ("torch", "he-uniform", "orthogonal")
"""Names of the initialisation schemes (``agent.init``)."""
ORTHOGONAL_GAIN = math.sqrt(2.0)
"""Gain of the ``orthogonal`` scheme (BRC's ``default_init`` scale)."""


@dataclass(frozen=True)
class InitSpec:
    """How one network is initialised.

    Attributes:
        scheme: one of :data:`INIT_SCHEMES` (hidden layers, and the head when ``head_bound``
            is None).
        head_bound: the output layer's weights and biases from U(-head_bound, head_bound), or
            None for the scheme's own rule.
    """

    scheme: str = "torch"
    head_bound: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in INIT_SCHEMES:
            raise ValueError(
                f"unknown init scheme {self.scheme!r}; choose from: {', '.join(INIT_SCHEMES)}"
            )
        if self.head_bound is not None and not self.head_bound > 0:
            raise ValueError(f"head init bound must be > 0, got {self.head_bound!r}")

    @property
    def is_default(self) -> bool:
        """True for PyTorch's default everywhere (what every architecture supports)."""
        return self.scheme == "torch" and self.head_bound is None


def weight_bound(scheme: str, fan_in: int) -> float:
    """Half-width of the uniform distribution of a weight with ``fan_in`` inputs."""
    if scheme == "he-uniform":
        return math.sqrt(6.0 / fan_in)
    return 1.0 / math.sqrt(fan_in)


def init_weight_(tensor: Tensor, fan_in: int, spec: InitSpec, generator: torch.Generator) -> None:
    """In place: a hidden-layer weight (any shape) with ``fan_in`` inputs per output unit."""
    if spec.scheme == "orthogonal":
        with torch.no_grad():
            for matrix in tensor.reshape(-1, *tensor.shape[-2:]) if tensor.dim() > 2 else [tensor]:
                torch.nn.init.orthogonal_(matrix, gain=ORTHOGONAL_GAIN, generator=generator)
        return
    bound = weight_bound(spec.scheme, fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


def init_bias_(tensor: Tensor, fan_in: int, spec: InitSpec, generator: torch.Generator) -> None:
    """In place: a hidden-layer bias of a layer with ``fan_in`` inputs (zero for he-uniform
    and orthogonal)."""
    with torch.no_grad():
        if spec.scheme in ("he-uniform", "orthogonal"):
            tensor.zero_()
        else:
            bound = weight_bound("torch", fan_in)
            tensor.uniform_(-bound, bound, generator=generator)


def init_head_(
    weight: Tensor, bias: Tensor, fan_in: int, spec: InitSpec, generator: torch.Generator
) -> None:
    """In place: the output layer's weight and bias (the head bound, else the scheme)."""
    if spec.head_bound is None:
        init_weight_(weight, fan_in, spec, generator)
        init_bias_(bias, fan_in, spec, generator)
        return
    with torch.no_grad():
        weight.uniform_(-spec.head_bound, spec.head_bound, generator=generator)
        bias.uniform_(-spec.head_bound, spec.head_bound, generator=generator)
