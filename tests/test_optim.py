"""The shared inner fitting loop (`core.optim`): its schedule's values, that it minimises, and what
it reports."""
import math

import pytest
import torch

from core.models.ema import EMA
from core.optim import fit, lr_factor


def test_warmup_then_cosine_to_zero():
    assert [lr_factor(s, 4, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 104) == 1.0
    assert lr_factor(54, 4, 104) == pytest.approx(0.5)          # half way through the cosine
    assert lr_factor(104, 4, 104) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(10, 0, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_constant_decay_is_the_diffusion_loops_warm_up():
    # the diffusion models' loop: lr * min(1, (step + 1) / max(1, warmup)), then constant
    for warmup in (0, 1, 5):
        for step in range(12):
            assert lr_factor(step, warmup, 12, "constant") == min(1.0, (step + 1) / max(1, warmup))
    with pytest.raises(ValueError, match="decay"):
        lr_factor(3, 0, 10, "linear")


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


def _tiny_run(tmp_path, stop_at=None, name="state.pt"):
    """A seeded tiny net with dropout, fitted on batches drawn from a generator, with an EMA."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=gen), torch.randn(64, 1, generator=gen)
    ema = EMA(net, 0.9)

    def step_loss(step):
        b = torch.randint(64, (8,), generator=gen)
        return ((net(x[b]) - y[b]) ** 2).mean()

    stop = (lambda step: step == stop_at) if stop_at is not None else None
    last = fit(net, step_loss, 20, 0.05, warmup=3, weight_decay=0.01, grad_clip=1.0, ema=ema,
               state_path=tmp_path / name, generators={"batches": gen}, save_every=7, stop=stop)
    return net, ema, last


def test_a_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    whole, whole_ema, whole_last = _tiny_run(tmp_path, name="whole.pt")
    part, _, _ = _tiny_run(tmp_path, stop_at=9, name="part.pt")
    assert torch.load(tmp_path / "part.pt", weights_only=True)["step"] == 9
    assert not all(torch.equal(a, b) for a, b in zip(part.state_dict().values(), whole.state_dict().values()))
    resumed, resumed_ema, resumed_last = _tiny_run(tmp_path, name="part.pt")   # same state file: goes on from 9
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(resumed_ema.state_dict().values(), whole_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed_last == whole_last
    again, _, last = _tiny_run(tmp_path, name="part.pt")     # a finished run does nothing more
    assert last == whole_last and all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                                           whole.state_dict().values()))


def test_a_state_file_needs_the_module(tmp_path):
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="module"):
        fit([w], lambda step: (w ** 2).sum(), 2, 0.1, state_path=tmp_path / "s.pt")
