"""The shared inner fitting loop (`core.optim`): its schedule's values, that it minimises, and what
it reports."""
import math

import pytest
import torch

from core.optim import fit, warmup_cosine


def test_warmup_then_cosine_to_zero():
    assert [warmup_cosine(s, 4, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 4, 104) == 1.0
    assert warmup_cosine(54, 4, 104) == pytest.approx(0.5)          # half way through the cosine
    assert warmup_cosine(104, 4, 104) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(10, 0, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_fit_minimises_and_reports_running_means():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(3))
    target = torch.tensor([1.0, -2.0, 0.5])
    reports = []
    last = fit([w], lambda step: ((w - target) ** 2).sum(), 400, 0.1, warmup=10,
               report=lambda step, running: reports.append((step, running["loss"])), reports=4)
    assert torch.allclose(w.detach(), target, atol=1e-2)
    assert [s for s, _ in reports] == [100, 200, 300, 400]
    assert reports[-1][1] < reports[0][1] and last["loss"] < 1e-3


def test_named_terms_are_reported_and_the_loss_is_what_is_minimised():
    w = torch.nn.Parameter(torch.tensor([3.0]))
    seen = []
    last = fit([w], lambda step: ((w ** 2).sum(), {"square": (w ** 2).sum(), "other": w.sum() * 0}), 50, 0.2,
               report=lambda step, running: seen.append(sorted(running)))
    assert seen and seen[0] == ["other", "square"] and set(last) == {"square", "other"}
    assert abs(w.item()) < 3.0
