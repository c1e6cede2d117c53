"""Randomness passed in: one generator per sample (EDM's StackedRandomGenerator).

Sample i of a batch draws all of its noise from its own torch.Generator seeded with seeds[i],
so a seed gives the same image whatever batch it is drawn in (on the same device and dtype).
Drawing with a list of per-sample generators is also what diffusers' `randn_tensor` does, so a
`BatchGenerator(seeds)` reproduces `generator=[torch.Generator().manual_seed(s) for s in seeds]`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class BatchGenerator:
    """One torch.Generator per sample, seeded with `seeds` on `device`."""

    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu"):
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds must name at least one seed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int):
                raise ValueError(f"seeds must be integers, got {s!r}")
        self.seeds: tuple[int, ...] = tuple(seeds)
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal noise of `shape`; row i comes from generator i (shape[0] == len(seeds))."""
        shape = tuple(shape)
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"shape[0] must equal the number of seeds ({len(self.generators)}), got shape {shape}")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=self.device, dtype=dtype)
                          for g in self.generators])

    def randn_like(self, x: Tensor) -> Tensor:
        """Noise of x's shape and dtype, on x's device."""
        return self.randn(x.shape, dtype=x.dtype).to(x.device)


Generator = BatchGenerator | torch.Generator


def randn_like(x: Tensor, generator: Generator) -> Tensor:
    """Noise shaped like x from a BatchGenerator (per sample) or one torch.Generator (the whole
    tensor in one draw, like diffusers' `randn_tensor`), on x's device and in x's dtype."""
    if isinstance(generator, BatchGenerator):
        return generator.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    raise ValueError(f"generator must be a BatchGenerator or a torch.Generator, got {type(generator).__name__}")
