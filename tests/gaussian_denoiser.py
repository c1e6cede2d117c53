"""Exact denoisers for Gaussian-mixture data, for sampler tests.

Data x0 ~ sum_k pi_k N(mu_k, Sigma_k) in D dimensions. Under q(x_t | x0) = N(a x0, s^2 I) with
a = sqrt(ab_t), s = sqrt(1 - ab_t), x_t is the mixture of N(a mu_k, C_k), C_k = a^2 Sigma_k + s^2 I,
and the exact noise prediction is E[eps | x_t] = s sum_k w_k(x_t) C_k^{-1} (x_t - a mu_k), with
w_k the posterior component weights. Everything is float64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from core.diffusion.schedules import NoiseSchedule


class GaussianMixture:
    def __init__(self, weights, means, covs, schedule: NoiseSchedule):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)      # [K, D]
        self.covs = torch.as_tensor(covs, dtype=torch.float64)        # [K, D, D]
        self.schedule = schedule
        self._eigen = torch.linalg.eigh(self.covs)                          # lam [K, D], U [K, D, D]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> Tensor:
        return self.weights @ self.means

    @property
    def cov(self) -> Tensor:
        d = self.means - self.mean
        return (self.weights[:, None, None] * (self.covs + d[:, :, None] * d[:, None, :])).sum(0)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        return self.means[k] + (chol[k] @ z[:, :, None])[:, :, 0]

    def _terms(self, x: Tensor, t: Tensor):
        """Per-component log densities of x_t [K, B], C^{-1}(x_t - a mu) [K, B, D] and s [B].
        With Sigma_k = U diag(lam) U^T, C_k = U diag(ab lam + 1 - ab) U^T: no batched solves;
        component-major layout so that reductions run over contiguous memory (tiny D and K)."""
        lam, u = self._eigen
        ab = self.schedule.alpha_bar(t).to(torch.float64).reshape(1, -1, 1)    # [1, B, 1]
        var = ab * lam[:, None, :] + (1 - ab)                                  # [K, B, D]
        diff = x.to(torch.float64)[None] - ab.sqrt() * self.means[:, None, :]  # [K, B, D]
        z = torch.bmm(diff, u) / var.sqrt()                                    # whitened U^T diff
        sol = torch.bmm(z / var.sqrt(), u.transpose(1, 2))                     # U (U^T diff / var)
        logp = -0.5 * self.dim * math.log(2 * math.pi) + self.weights.log()[:, None]
        for d in range(self.dim):
            logp = logp - 0.5 * z[..., d] * z[..., d] - 0.5 * var[..., d].log()
        return logp, sol, (1 - ab).sqrt().reshape(-1)

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact eps-denoiser for x of shape [B, D]."""
        logp, sol, s = self._terms(x, t)
        w = (logp - logp.logsumexp(dim=0)).exp()
        return (s[:, None] * (w[..., None] * sol).sum(0)).to(x.dtype)

    def log_prob_class(self, x: Tensor, t: Tensor, k: int) -> Tensor:
        """log p(component k | x_t), differentiable in x: an exact noisy classifier."""
        logp, _, _ = self._terms(x, t)
        return logp[k] - logp.logsumexp(dim=0)

    def pixel_denoiser(self, x: Tensor, t: Tensor) -> Tensor:
        """A 1-D mixture applied to every element of x [B, ...] independently (D must be 1)."""
        per = x[0].numel()
        eps = self.eps(x.reshape(-1, 1), t.repeat_interleave(per))
        return eps.reshape(x.shape)
