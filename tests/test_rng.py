"""Per-sample generators (the full-sampler batch-invariance test is in test_sampler_gaussian.py)."""
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from core.diffusion.rng import BatchGenerator, randn_like


def test_each_row_comes_from_its_own_seed():
    gen = BatchGenerator([5, 6, 7])
    noise = gen.randn((3, 2, 4))
    for i, s in enumerate((5, 6, 7)):
        assert torch.equal(noise[i:i + 1], torch.randn((1, 2, 4), generator=torch.Generator().manual_seed(s)))
    # the streams continue: a second draw differs from the first
    assert not torch.equal(gen.randn((3, 2, 4)), noise)


def test_same_seed_same_noise_whatever_the_batch():
    alone = BatchGenerator([6]).randn_like(torch.zeros(1, 3, 8, 8))
    together = BatchGenerator([5, 6, 7]).randn_like(torch.zeros(3, 3, 8, 8))
    assert torch.equal(alone[0], together[1])


def test_matches_diffusers_list_of_generators():
    seeds = [1, 2]
    ref = randn_tensor((2, 3, 4, 4), generator=[torch.Generator().manual_seed(s) for s in seeds])
    assert torch.equal(BatchGenerator(seeds).randn((2, 3, 4, 4)), ref)
    x = torch.zeros(2, 3, dtype=torch.float64)
    one = randn_like(x, torch.Generator().manual_seed(3))
    assert one.dtype == torch.float64
    assert torch.equal(one, torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="seeds"):
        BatchGenerator([])
    with pytest.raises(ValueError, match="seeds"):
        BatchGenerator([1.5])
    with pytest.raises(ValueError, match="shape"):
        BatchGenerator([1, 2]).randn((3, 4))
    with pytest.raises(ValueError, match="generator"):
        randn_like(torch.zeros(2), 42)
