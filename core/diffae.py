"""Attribute editing with a diffusion autoencoder (DiffAE, Preechakul et al. CVPR 2022).

An image x0 is encoded twice (sec. 3.1-3.2 of the paper):
- the *semantic code* z_sem = Enc(x0) [B, semantic_dim] (`SemanticEncoder`, core/models/networks.py),
  which conditions the decoder UNet through its time embedding (AdaGN);
- the *stochastic code* x_T = DDIM inversion of x0 given z_sem (eq. 2 of DiffAE: the
  deterministic DDIM ODE run from t = 0 up to t = T), so that DDIM decoding (z_sem, x_T) -> x0
  nearly reproduces the image; decoding z_sem with fresh noise keeps its semantics only.

Attribute directions (sec. 4.2), on the *normalised* codes zn = (z_sem - mean) / std (mean /
std of the training-split codes): per attribute, the unit vector u along the difference of the
two class means, mu+ - mu- (a nearest-class-mean linear classifier), and its length, the
attribute's *class gap* g = |mu+ - mu-|. Strength is in class gaps: an edit moves
zn' = zn + strength * g * u, i.e. z' = z + strength * g * std * u, and decodes (z', x_T) with the
image's own x_T; strength 1 moves an average negative code onto the average positive one, for
every attribute alike (the gaps differ: 4-7 standard deviations of the code). Strength 0 takes the
same code path as a reconstruction and gives the same image. A logistic-regression classifier per attribute is
fitted too; it scores codes (`Directions.score`) but does not set the direction: with ~1,000
labelled codes in 256 dimensions its weight vector picks low-variance discriminative dimensions
(cosine 0.36 with mu+ - mu- for ``woman`` on the 7.9k-step model) that the decoder hardly
renders: no held-out man was rated woman after 3 standard deviations along it, 72% after one
class gap along u (`python -m core evaluate-diffae`; checkpoints/diffae/README.md).

Attributes (labels from core/data/emoji.py records, training split only):
- ``dark-skin``  binary, people emoji with a single skin tone: positive = medium-dark / dark,
  negative = light / medium-light (medium left out);
- ``woman``      binary, gender woman (positive) vs man (negative);
- ``smiling``    binary, faces of "Smileys & Emotion" (subgroups ``face-*``): names with
  smiling / grinning / beaming / laughing / joy / grin positive, the other faces negative.

Files of the checkpoint folder ``diffae/``: ``config.json`` + ``model.safetensors`` (the
model), ``directions.safetensors`` (``directions`` [K, D] unit vectors, ``gaps`` [K] class gaps,
``weights`` [K, D] and ``bias`` [K] of the classifiers, ``mean`` / ``std`` [D]) and ``attributes.json`` (the K names
in order, with their label rules).

Command line: ``python -m core reconstruct|attributes|edit ...``, ``python -m core diffae-directions``
(fit and save the directions of a trained checkpoint) and ``python -m core evaluate-diffae [--n N]``
(reconstruction PSNR and edit success, `core.evaluation.diffae`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.checks import check_int, check_range
from core.data.emoji import TONES
from core.diffusion.guidance import cfg_denoiser
from core.diffusion.rng import BatchGenerator
from core.diffusion.samplers import ddim_invert, sample, sampler_stage_spacing
from core.models.checkpoints import CheckpointError
from core.models.names import ATTRIBUTES_FILE, DIRECTIONS_FILE, attribute_names
from core.models.networks import DiffusionModel

DEFAULT_STEPS = 50          # DDIM steps of encoding (inversion) and of decoding
MAX_DECODER_GUIDANCE = 10.0   # classifier-free guidance on z_sem (decode)
MAX_STRENGTH = 3.0          # in class gaps: 1 moves an average image without the attribute onto the average with it
SEMANTIC_DIM = 256
ENCODER_CHANNELS = (32, 64, 128, 256)
SMILE_WORDS = ("smiling", "grinning", "beaming", "laughing", "joy", "grin")

ATTRIBUTE_RULES = {
    "dark-skin": "people with one skin tone: medium-dark/dark (+) vs light/medium-light (-)",
    "woman": "gender from the name: woman (+) vs man (-)",
    "smiling": "faces (Smileys & Emotion, face-*): smiling/grinning/beaming/laughing/joy/grin in the name (+) "
               "vs other faces (-)",
}


# ---------------------------------------------------------------------------------- codes
def _check_model(model: DiffusionModel) -> None:
    if getattr(model, "kind", None) != "diffae":
        raise ValueError(f"expected a diffae model, got kind {getattr(model, 'kind', type(model).__name__)!r}")


def _check_images(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    r = model.resolution
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1:] != (3, r, r):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be [B, 3, {r}, {r}] in [-1, 1], got {shape}")
    return images.to(next(model.parameters()).device, torch.float32)


def check_steps(steps) -> int:
    """DDIM steps of encoding or decoding: an integer from 1 to 1000."""
    return check_int("steps", steps, 1, 1000)


def _denoiser(model: DiffusionModel, z_sem: torch.Tensor, guidance: float = 1.0):
    """The decoder's eps given z_sem; with guidance s != 1, classifier-free guidance on the code
    against the null code (zeros, what a decoder trained with condition dropout saw when its code was
    dropped; DALL-E 2's decoder, Ramesh et al. 2022, sec. 2.1). s = 1 is the plain decoder."""
    cond = {"z_sem": z_sem}
    if guidance == 1.0:
        return lambda x_t, t: model.eps(x_t, t, cond)  # noqa: E731
    return cfg_denoiser(model.eps, cond, {"z_sem": torch.zeros_like(z_sem)}, guidance)


def code_denoiser(model: DiffusionModel, z_sem: torch.Tensor, guidance: float = 1.0):
    """The decoder as an eps-denoiser (x_t, t) -> eps drawing z_sem, with classifier-free guidance
    `guidance` on the code (1 = none); for samplers and projections of other modules."""
    _check_model(model)
    return _denoiser(model, z_sem, check_guidance(guidance))


def check_guidance(guidance) -> float:
    """The decoder's guidance scale on z_sem: a number from 0 to MAX_DECODER_GUIDANCE."""
    return check_range("decoder guidance", guidance, 0.0, MAX_DECODER_GUIDANCE)


@torch.no_grad()
def semantic_code(model: DiffusionModel, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """z_sem = Enc(x0) for [B, 3, r, r] images in [-1, 1] (batched; float32)."""
    _check_model(model)
    images = _check_images(model, images)
    return torch.cat([model.conditioner.encoder(images[s:s + batch]).float() for s in range(0, len(images), batch)])


@torch.no_grad()
def encode(model: DiffusionModel, images: torch.Tensor,
           steps: int = DEFAULT_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_sem, x_T): the semantic code and the stochastic code, x_T = DDIM inversion (eta = 0)
    of the image conditioned on its own z_sem (DiffAE eq. 2)."""
    _check_model(model)
    images = _check_images(model, images)
    z = model.conditioner.encoder(images).float()
    x_T = ddim_invert(_denoiser(model, z), images, model.schedule, check_steps(steps))
    return z, x_T


@torch.no_grad()
def decode(model: DiffusionModel, z_sem: torch.Tensor, x_T: torch.Tensor, steps: int = DEFAULT_STEPS,
           callback=None, sampler: str = "ddim", guidance: float = 1.0) -> torch.Tensor:
    """Deterministic sampling from x_T given z_sem; images in [-1, 1]. With "ddim" (eta = 0) and the
    x_T of `encode` this reconstructs the image; with fresh N(0, I) noise it renders z_sem's
    semantics (another deterministic `sampler`, e.g. "dpmpp-2m", renders it in fewer steps; on
    its stage grid, `core.diffusion.samplers.sampler_stage_spacing`). `callback` gets the sampler's
    progress dicts (core.diffusion.samplers). `guidance` s != 1: classifier-free guidance on z_sem
    (`_denoiser`); only a decoder trained with condition dropout knows the null code."""
    _check_model(model)
    guidance = check_guidance(guidance)
    if z_sem.ndim != 2 or x_T.ndim != 4 or z_sem.shape[0] != x_T.shape[0]:
        raise ValueError(f"z_sem [B, D] and x_T [B, 3, H, W] must share B; "
                         f"got {tuple(z_sem.shape)}, {tuple(x_T.shape)}")
    return sample(sampler, _denoiser(model, z_sem.to(x_T.device), guidance), x_T, model.schedule, check_steps(steps),
                  callback=callback, spacing=sampler_stage_spacing(sampler)).clamp(-1, 1)


def fresh_noise_guidance(model: DiffusionModel, guidance: float | None = None) -> float:
    """The classifier-free guidance on z_sem the decoder draws fresh noise with: `guidance` when
    given, else the scale its checkpoint names (config `guidance`, measured best: see its card),
    else 1 (a decoder trained without condition dropout knows no null code). An inverted x_T is
    always decoded unguided, as it was inverted."""
    if guidance is not None:
        return check_guidance(guidance)
    named = getattr(model.config, "guidance", None)
    return 1.0 if named is None else float(named)


def fresh_noise(model: DiffusionModel, seeds: Sequence[int]) -> torch.Tensor:
    """N(0, I) stochastic codes, one generator per seed."""
    device = next(model.parameters()).device
    r = model.resolution
    return BatchGenerator(list(seeds), device).randn((len(seeds), 3, r, r))


def reconstruct(model: DiffusionModel, images: torch.Tensor, steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """decode(encode(x)): the autoencoder's reconstruction."""
    z, x_T = encode(model, images, steps)
    return decode(model, z, x_T, steps)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of two noise tensors (per sample), exact at alpha 0 and 1."""
    if alpha == 0:
        return a.clone()
    if alpha == 1:
        return b.clone()
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    theta = cos.clamp(-1, 1).acos().view(-1, *([1] * (a.ndim - 1)))
    small = theta.abs() < 1e-4   # nearly parallel: linear interpolation
    s = theta.sin().clamp_min(1e-12)
    wa = torch.where(small, torch.full_like(theta, 1 - alpha), ((1 - alpha) * theta).sin() / s)
    wb = torch.where(small, torch.full_like(theta, alpha), (alpha * theta).sin() / s)
    return (wa * a.double() + wb * b.double()).to(a.dtype)


def interpolate(model: DiffusionModel, a: torch.Tensor, b: torch.Tensor, n: int = 5,
                steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """n images from a to b ([1, 3, r, r] each, or [3, r, r]): z_sem linearly, x_T spherically
    (DiffAE sec. 4.1). The first and last are the reconstructions of a and b."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    a, b = (x.unsqueeze(0) if x.ndim == 3 else x for x in (a, b))
    if a.shape[0] != 1 or b.shape[0] != 1:
        raise ValueError("interpolate takes one image a and one image b")
    z, x_T = encode(model, torch.cat([a, b]), steps)
    alphas = [i / (n - 1) for i in range(n)]
    zs = torch.cat([z[:1] if al == 0 else z[1:] if al == 1 else torch.lerp(z[:1], z[1:], al) for al in alphas])
    xs = torch.cat([slerp(x_T[:1], x_T[1:], al) for al in alphas])
    return decode(model, zs, xs, steps)


# ---------------------------------------------------------------------------------- directions
@dataclass
class Directions:
    """Linear attribute directions in the normalised semantic space."""
    names: list[str]
    directions: torch.Tensor   # [K, D] unit vectors along mu+ - mu- (normalised space)
    gaps: torch.Tensor         # [K] |mu+ - mu-|: the strength that moves the negative mean onto the positive
    weights: torch.Tensor      # [K, D] logistic-regression weights (normalised space)
    bias: torch.Tensor         # [K]
    mean: torch.Tensor         # [D] of the training-split codes
    std: torch.Tensor          # [D]

    def index(self, attribute: str) -> int:
        if attribute not in self.names:
            raise ValueError(f"unknown attribute {attribute!r}; valid attributes: {', '.join(self.names)}")
        return self.names.index(attribute)

    def gap(self, attribute: str) -> float:
        """The attribute's class gap |mu+ - mu-| in normalised space (the unit of strength)."""
        return float(self.gaps[self.index(attribute)])

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean.to(z)) / self.std.to(z)

    def denormalise(self, zn: torch.Tensor) -> torch.Tensor:
        return zn * self.std.to(zn) + self.mean.to(zn)

    def shift(self, z: torch.Tensor, attribute: str, strength: float) -> torch.Tensor:
        """z' = denormalise(normalise(z) + strength * g * u) = z + strength * g * std * u (DiffAE
        sec. 4.2, with `strength` in units of the attribute's class gap g), written in the second
        form so that strength 0 returns z unchanged, bit for bit."""
        k = self.index(attribute)
        u = self.directions[k].to(z)
        return z + float(strength) * float(self.gaps[k]) * (self.std.to(z) * u)

    def score(self, z: torch.Tensor, attribute: str) -> torch.Tensor:
        """The attribute classifier's logit for each code [B]."""
        k = self.index(attribute)
        return self.normalise(z) @ self.weights[k].to(z) + self.bias[k].to(z)

    def save(self, folder: str | os.PathLike) -> Path:
        """directions.safetensors + attributes.json, each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"directions": self.directions, "gaps": self.gaps, "weights": self.weights, "bias": self.bias,
                   "mean": self.mean, "std": self.std}
        tmp = folder / f".{DIRECTIONS_FILE}.tmp"
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, folder / DIRECTIONS_FILE)
        meta = {"attributes": list(self.names),
                "rules": {n: ATTRIBUTE_RULES.get(n, "") for n in self.names},
                "class_gaps": {n: round(float(g), 4) for n, g in zip(self.names, self.gaps)},
                "space": "normalised z_sem: (z - mean) / std of the training-split codes"}
        tmp = folder / f".{ATTRIBUTES_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, folder / ATTRIBUTES_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Directions:
        folder = Path(folder)
        names = attribute_names(folder)
        try:
            t = load_file(str(folder / DIRECTIONS_FILE))
            if "gaps" not in t:
                raise CheckpointError(f"directions in {folder} predate the class-mean directions (no class gaps); "
                                      f"refit them with `python -m core diffae-directions`")
            d = cls(names, t["directions"], t["gaps"], t["weights"], t["bias"], t["mean"], t["std"])
        except CheckpointError:
            raise
        except Exception as e:  # JSON, missing keys, and safetensors' own error types
            raise CheckpointError(f"directions in {folder} cannot be read: {e}") from e
        if (d.directions.shape[0] != len(names) or d.directions.shape != d.weights.shape
                or d.gaps.shape != (len(names),)):
            raise CheckpointError(f"directions in {folder}: {len(names)} names but "
                                  f"{tuple(d.directions.shape)} directions")
        return d


def fit_logistic(x: torch.Tensor, y: torch.Tensor, iterations: int = 300, lr: float = 0.05,
                 l2: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced logistic regression (full batch, Adam) -> (w [D], b)."""
    x, y = x.double(), y.double()
    pos = y.mean().clamp(1e-6, 1 - 1e-6)
    sample_w = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))   # each class weighs half
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(iterations):
            opt.zero_grad()
            logits = x @ w + b
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
                    * sample_w).mean() + l2 * w.pow(2).sum()
            loss.backward()
            opt.step()
    return w.detach().float(), b.detach().float()


def fit_from_codes(z: torch.Tensor, labels: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   iterations: int = 300) -> Directions:
    """Directions from training codes z [N, D] and, per attribute, (row indices into z, 0/1 labels):
    the unit class-mean difference and its length (the class gap), plus a logistic classifier."""
    z = z.float().cpu()
    mean, std = z.mean(0), z.std(0).clamp_min(1e-6)
    zn = (z - mean) / std
    names, dirs, gaps, weights, biases = [], [], [], [], []
    for name, (idx, y) in labels.items():
        y = torch.as_tensor(y).float()
        if len(y) < 2 or y.min() == y.max():
            raise ValueError(f"attribute {name!r} needs examples of both classes, got {len(y)} examples")
        x = zn[torch.as_tensor(idx, dtype=torch.long)]
        diff = x[y > 0.5].mean(0) - x[y < 0.5].mean(0)       # mu+ - mu-
        w, b = fit_logistic(x, y, iterations)
        names.append(name)
        dirs.append(diff / diff.norm().clamp_min(1e-12))
        gaps.append(diff.norm())
        weights.append(w)
        biases.append(b)
    return Directions(names, torch.stack(dirs), torch.stack(gaps), torch.stack(weights), torch.stack(biases),
                      mean, std)


def attribute_labels(records: Sequence) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per attribute: (record positions, 0/1 labels); the rules of ATTRIBUTE_RULES."""
    out: dict[str, tuple[list[int], list[int]]] = {n: ([], []) for n in ATTRIBUTE_RULES}

    def add(name, i, label):
        out[name][0].append(i)
        out[name][1].append(label)

    for i, r in enumerate(records):
        if r.group == "People & Body" and r.skin_tone in TONES and r.skin_tone != "medium":   # medium left out
            add("dark-skin", i, int(r.skin_tone in ("medium-dark", "dark")))
        if r.gender in ("woman", "man"):
            add("woman", i, int(r.gender == "woman"))
        if r.group == "Smileys & Emotion" and r.subgroup.startswith("face-"):
            add("smiling", i, int(any(w in r.name.lower().split() or w in r.name.lower() for w in SMILE_WORDS)))
    return {n: (torch.tensor(i, dtype=torch.long), torch.tensor(y, dtype=torch.long))
            for n, (i, y) in out.items() if i and len(set(y)) == 2}


def fit_directions(model: DiffusionModel, dataset, iterations: int = 300) -> Directions:
    """Encode the training split (z_sem only, no inversion), then fit one direction per attribute."""
    _check_model(model)
    idx = dataset.indices("train")
    z = semantic_code(model, dataset.images_at(model.resolution, idx))
    records = [dataset.records[i] for i in idx.tolist()]
    labels = attribute_labels(records)
    if not labels:
        raise ValueError("the data set has no labelled examples for any attribute")
    return fit_from_codes(z, labels, iterations)


def edit(model: DiffusionModel, directions: Directions, images: torch.Tensor, attribute: str,
         strength: float, steps: int = DEFAULT_STEPS, x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Move z_sem along the attribute's direction and decode with the image's own x_T (or the
    x_T given, e.g. fresh noise, drawn with the decoder's `fresh_noise_guidance`). strength 0 is
    exactly `reconstruct`."""
    directions.index(attribute)
    strength = check_strength(strength)
    z, own_x_T = encode(model, images, steps)
    if x_T is None:
        return decode(model, directions.shift(z, attribute, strength), own_x_T, steps)
    return decode(model, directions.shift(z, attribute, strength), x_T, steps,
                  guidance=fresh_noise_guidance(model))


def check_strength(strength) -> float:
    """An edit strength in class gaps: a finite number from -MAX_STRENGTH to MAX_STRENGTH."""
    return check_range("strength", strength, -MAX_STRENGTH, MAX_STRENGTH)


def load_directions(models) -> Directions:
    """The directions stored next to the diffae model of a ModelSet."""
    return Directions.load(Path(models.root) / "diffae")


def sweep(model: DiffusionModel, directions: Directions, images: torch.Tensor, attribute: str,
          strengths: Sequence[float], steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """The edit of each image at each strength, encoded once: [len(strengths), B, 3, r, r], each
    decoded with the image's own x_T (strength 0 is the reconstruction)."""
    directions.index(attribute)
    strengths = [check_strength(s) for s in strengths]
    z, x_T = encode(model, images, steps)
    zs = torch.cat([directions.shift(z, attribute, s) for s in strengths])
    out = decode(model, zs, x_T.repeat(len(strengths), 1, 1, 1), steps)
    return out.view(len(strengths), *images.shape)
