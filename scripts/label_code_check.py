"""How closely a code class base's one-step generator follows the semantic prior it was distilled
from, on fresh noises (not the distillation set): for every label, N noises go through the
prior's own sampler (its defaults) and through the class base's label_code.

    python scripts/label_code_check.py [--checkpoints checkpoints] [--n 16] [--threads 1]

Prints the squared error per code dimension between the two (normalised codes; mean and median)
and, for a mixture (`code_modes`), how often it picks the centre nearest the prior's code and how
many distinct centres it uses per label against the prior's. A regression's error is blur (it
averages emoji); a mixture's is whole jumps (another emoji of the label).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models.loading import load_model  # noqa: E402
from core.models.prior import denoise_codes  # noqa: E402
from core.semantic import PRIOR_DEFAULTS  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--n", type=int, default=16, help="fresh noises per label")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    base = load_model(Path(a.checkpoints) / "class_base")
    prior = load_model(Path(a.checkpoints) / "prior")
    if not base.config.sampled_code:
        raise SystemExit("the class base does not draw codes (its conditioner is not label_code)")
    net, n = base.conditioner.label_code, a.n
    gen = torch.Generator().manual_seed(a.seed)
    errors, agree, used, prior_used = [], [], [], []
    with torch.no_grad():
        for i, name in enumerate(base.config.classes):
            noise = torch.randn(n, prior.config.dim, generator=gen)
            zn = denoise_codes(prior, prior.label_cond([name] * n), prior.null_cond(n), noise,
                               PRIOR_DEFAULTS.guidance, PRIOR_DEFAULTS.steps, PRIOR_DEFAULTS.sampler)
            target = base.conditioner.normalise(prior.denormalise(zn))
            labels = torch.full((n,), i)
            errors.append((net(labels, noise) - target).pow(2).mean(1))
            if net.modes:
                _, logits = net.mixture(labels, noise)
                own = (net.mode_labels == i).nonzero().squeeze(1)
                nearest = own[torch.cdist(target, net.mode_codes[own]).argmin(1)]
                picked = logits.argmax(1)
                agree.append((picked == nearest).float())
                used.append(len(set(picked.tolist())))
                prior_used.append(len(set(nearest.tolist())))
    e = torch.cat(errors)
    print(f"squared error against the prior's code: mean {e.mean():.4f}, median {e.median():.4f} "
          f"({len(base.config.classes)} labels x {n} noises)")
    if net.modes:
        print(f"picks the centre nearest the prior's code: {torch.cat(agree).mean():.3f}")
        print(f"distinct centres per label over {n} noises: {sum(used) / len(used):.2f} "
              f"(the prior's codes: {sum(prior_used) / len(prior_used):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
