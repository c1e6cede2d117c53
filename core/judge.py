"""The judge: a small CNN that tells an emoji from what is not one, and says which it is.

An evaluator of generated images (as Inception is for FID), trained on ALL real emoji of the
data set (both splits) at 32x32, with three heads on one :class:`core.models.small_cnn.SmallCNN`
trunk (four 3x3 convs, widths w, 2w, 4w, 4w, global average pooling):

- **realism**: one logit, "is an emoji" vs "not an emoji". Positives are real emoji under
  strong augmentation (shifts, scale, small colour jitter, mild blur, a round trip through
  16x16, faint noise): a real emoji blurred to 16 px must still pass. Negatives are real emoji
  degraded heavily (:func:`degrade`): strong Gaussian blur or a round trip through 8x8,
  additive noise, colour-only blobs (the emoji's mean colour, or a few colours of its blurred
  self, in its silhouette, soft or sharp), shuffled patches, and poor samples of the
  committed text base (2-3 DDIM steps, :func:`poor_samples`).
- **subgroup**: the data set's ~100 subgroups (the class labels).
- **design**: the emoji up to skin tone and gender (:func:`design_of`), a training signal that
  makes the pooled features (the penultimate layer, :meth:`Judge.features`) a space where the
  nearest real emoji of a drawing are its own design: the space of :func:`retrieval` and
  :func:`feature_fd`.

Metrics (each per sample, pure given the judge):

- :func:`recognisability`: accepted as an emoji AND the subgroup as asked;
- :func:`retrieval`: the asked design is among the designs of the k nearest real emoji;
- :func:`feature_fd`: the Frechet distance between two image sets in the judge's features.

Checkpoint: ``checkpoints/judge/`` (``config.json`` with the subgroup names, the recipe and
the measured figures; fp16 ``model.safetensors`` without the training-only design head;
``README.md``). The retrieval reference (the real emoji's features) is computed from the data
set when first needed, not stored.

Command line::

    python -m core.judge train [--out DIR] [--steps N] [--exclude-heldout] [--checkpoints DIR] [--threads N]
    python -m core.judge score IMAGE... [--judge DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.evaluation.classifiers import data_fingerprint
from core.models.small_cnn import SmallCNN, to_resolution

RESOLUTION = 32
FORMAT_VERSION = 1
PEOPLE_GROUP = "People & Body"
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "checkpoints" / "judge"
NEGATIVE_KINDS = ("blur", "pixelate", "noise", "mean_blob", "colour_blob", "shuffle", "warp", "smear", "chimera",
                  "poor", "early")
SAMPLED_KINDS = ("poor", "early")   # negatives drawn from a bank of generated samples
MANIFOLD_QUANTILE = 0.05   # of real emoji through 16 px that each test (realism head, manifold) may reject
SHAPE_KINDS = ("mean_blob", "colour_blob", "shuffle", "warp", "smear", "chimera")   # negatives by their drawing

# --------------------------------------------------------------------------- designs

# People & Body words that only say who (gender, age group) and not what is drawn.
_WHO = {"man": "person", "woman": "person", "person": "person", "adult": "person",
        "men": "people", "women": "people", "people": "people",
        "boy": "child", "girl": "child", "child": "child",
        "prince": "person with crown", "princess": "person with crown",
        "merman": "merperson", "mermaid": "merperson", "santa": "mx", "mrs.": "mx", "old": "older"}
_SKIN = re.compile(r"^(light|medium-light|medium|medium-dark|dark) skin tone$")


def _neutral(phrase: str) -> str:
    words = [_WHO.get(w, w) for w in phrase.split()]
    text = " ".join(words).replace("person and person", "people")
    if text.startswith("person ") and text != "person with crown":
        text = text[len("person "):]   # "man artist" / "person running" -> the neutral "artist" / "running"
    return text


def design_of(record) -> str:
    """The emoji up to skin tone and gender: the lowercased name without its skin-tone
    qualifiers; in People & Body also with man / woman / person (boy / girl / child, men / women
    / people, ...) made one, so "woman dancing: dark skin tone", "man dancing" and "person
    dancing" share a design, and "kiss: woman, man" is "kiss"."""
    base, _, qual = record.name.lower().partition(": ")
    parts = [p for p in qual.split(", ") if p and not _SKIN.match(p)]
    if record.group == PEOPLE_GROUP:
        base = _neutral(base)
        parts = [_neutral(p) if p in _WHO else p for p in parts]
        if parts and all(p in ("person", "people") for p in parts):
            parts = []   # "kiss: woman, man" draws the same as "kiss"
    return f"{base}: {', '.join(parts)}" if parts else base


def is_people(record) -> bool:
    """Whether a record is in People & Body (the split every figure is reported by)."""
    return record.group == PEOPLE_GROUP


# --------------------------------------------------------------------------- network


class JudgeNet(SmallCNN):
    """SmallCNN's trunk and subgroup head, plus a realism logit and a design head on the
    same pooled features. The design head only shapes the features in training (retrieval is by
    nearest neighbours), so a saved judge has none (``num_designs`` 0) and stays small."""

    def __init__(self, num_subgroups: int, num_designs: int = 0, width: int = 32):
        super().__init__(num_subgroups, width)
        self.realism = nn.Linear(4 * width, 1)
        self.design = nn.Linear(4 * width, num_designs) if num_designs else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: pooled trunk features [B, 4w]."""
        return self.head[1](self.head[0](self.features(x)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.embed(x)
        d = self.head[2](f)   # dropout (training only)
        out = {"features": f, "realism": self.realism(d).squeeze(1), "subgroup": self.head[3](d)}
        if self.design is not None:
            out["design"] = self.design(d)
        return out


# --------------------------------------------------------------------------- the judge


class JudgeError(ValueError):
    """A judge checkpoint that cannot be used; the message names the folder and what is missing."""


class Judge:
    """A trained judge: per-image ``realism`` / ``accept`` / ``subgroups`` / ``features`` on
    [-1, 1] images of any size (area-resized to 32x32), ``save`` / ``load``, and the real emoji
    it retrieves from (``set_reference``; by default the whole data set, loaded on first use)."""

    def __init__(self, model: JudgeNet, subgroups: Sequence[str], info: dict):
        self.model = model.eval()
        self.subgroups = list(subgroups)
        self.info = dict(info)
        self.threshold = float(self.info.get("threshold", 0.5))
        m = self.info.get("manifold_threshold")
        self.manifold = None if m is None else float(m)
        self._reference = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def outputs(self, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        """All heads in one pass, float32 on the CPU: features [B, D], realism probability [B],
        subgroup logits [B, S]."""
        self.model.eval()
        keys = ("features", "realism", "subgroup")
        parts: dict[str, list] = {k: [] for k in keys}
        for s in range(0, len(images), batch):
            out = self.model(to_resolution(images[s:s + batch]).to(self.device))
            for k in keys:
                parts[k].append(out[k].float().cpu())
        if not parts["features"]:
            w = self.model.realism.in_features
            return {"features": torch.zeros(0, w), "realism": torch.zeros(0),
                    "subgroup": torch.zeros(0, len(self.subgroups))}
        out = {k: torch.cat(v) for k, v in parts.items()}
        out["realism"] = torch.sigmoid(out["realism"])
        return out

    def scores(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`outputs`, plus ``nearest`` [B] (cosine similarity of the features to the nearest
        real emoji of the reference; only for a judge with a manifold threshold) and ``accepted``
        [B] bool: the realism probability above ``threshold`` AND, for such a judge, ``nearest`` at
        least ``manifold``: the image lies as close to some real emoji as the judge's own augmented
        real emoji do (the k-NN test of improved precision, Kynkaanniemi et al. 2019, with k = 1
        and one global radius)."""
        out = self.outputs(images)
        out["accepted"] = out["realism"] > self.threshold
        if self.manifold is not None:
            out["nearest"] = self.nearest(out["features"])
            out["accepted"] &= out["nearest"] >= self.manifold
        return out

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        """[B] cosine similarity of features to their nearest real emoji of the reference."""
        ref = self.reference()[1]
        if len(features) == 0:
            return torch.zeros(0)
        return (F.normalize(features, dim=1) @ ref.T).max(1).values

    def realism(self, images: torch.Tensor) -> torch.Tensor:
        """[B] probability that each image is an emoji (the realism head alone)."""
        return self.outputs(images)["realism"]

    def accept(self, images: torch.Tensor) -> torch.Tensor:
        """[B] bool: accepted as an emoji (see :meth:`scores`)."""
        return self.scores(images)["accepted"]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, D] penultimate-layer features."""
        return self.outputs(images)["features"]

    def predict_subgroups(self, images: torch.Tensor) -> list[str]:
        return [self.subgroups[i] for i in self.outputs(images)["subgroup"].argmax(1).tolist()]

    def subgroup_index(self, name: str) -> int:
        try:
            return self.subgroups.index(name)
        except ValueError:
            raise ValueError(f"the judge knows no subgroup {name!r}") from None

    # ---- the real emoji retrieval searches

    def set_reference(self, data) -> "Judge":
        """Retrieve from the real 32 px renders of every record of ``data`` (features computed
        once here)."""
        feats = F.normalize(self.features(data.images_at(RESOLUTION)), dim=1)
        self._reference = (data, feats, [design_of(r) for r in data.records])
        return self

    def reference(self):
        """(data set, L2-normalised features [N, D], design per record) of the retrieval set."""
        if self._reference is None:
            from core.data.emoji import load_dataset
            self.set_reference(load_dataset())
        return self._reference

    # ---- I/O

    def save(self, folder: str | Path, card: str) -> Path:
        """config.json + fp16 model.safetensors (without the training-only design head) + README.md,
        written atomically."""
        from core.models.checkpoints import save_folder
        config = {**self.info, "kind": "judge", "subgroups": self.subgroups}
        state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("design.")}
        return save_folder(folder, config, state, card)

    @classmethod
    def load(cls, folder: str | Path | None = None, device: str | torch.device = "cpu") -> "Judge":
        from core.models.checkpoints import CheckpointError, load_state_checked, read_folder
        folder = Path(folder) if folder is not None else DEFAULT_FOLDER
        try:
            config, state = read_folder(folder)
        except CheckpointError as e:
            raise JudgeError(f"judge: {e} (train one with `python -m core.judge train --out {folder}`)") from e
        missing = [k for k in ("subgroups", "width") if k not in config]
        if missing:
            raise JudgeError(f"judge checkpoint {folder}: config.json has no {', '.join(repr(k) for k in missing)}")
        if config.get("kind") != "judge":
            raise JudgeError(f"judge checkpoint {folder}: config.json is for {config.get('kind')!r}, not a judge")
        model = JudgeNet(len(config["subgroups"]), 0, int(config["width"]))
        try:
            load_state_checked(model, state, folder)
        except CheckpointError as e:
            raise JudgeError(str(e)) from e
        info = {k: v for k, v in config.items() if k != "subgroups"}
        return cls(model.to(device), config["subgroups"], info)


# --------------------------------------------------------------------------- metrics


def recognisability(judge: Judge, images: torch.Tensor, subgroups: Sequence[str]) -> torch.Tensor:
    """[B] bool: accepted as an emoji AND its top-1 subgroup is the one asked for."""
    if len(subgroups) != len(images):
        raise ValueError(f"got {len(subgroups)} subgroups for {len(images)} images")
    out = judge.scores(images)
    want = torch.tensor([judge.subgroup_index(s) for s in subgroups], dtype=torch.long)
    return out["accepted"] & (out["subgroup"].argmax(1) == want)


def retrieval(judge: Judge, images: torch.Tensor, asked_record_indices: Sequence[int], k: int = 5) -> torch.Tensor:
    """[B] bool: the design of the asked record (an index into the judge's reference data set)
    is among the designs of the k real emoji nearest to the image (cosine similarity of the
    judge's features). A real render finds itself; the informative reference is a real emoji
    blurred to 16 px."""
    if len(asked_record_indices) != len(images):
        raise ValueError(f"got {len(asked_record_indices)} asked records for {len(images)} images")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    _, ref, designs = judge.reference()
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.bool)
    sims = F.normalize(judge.features(images), dim=1) @ ref.T
    near = sims.topk(min(k, ref.shape[0]), dim=1).indices.tolist()
    return torch.tensor([designs[int(a)] in {designs[j] for j in row}
                         for a, row in zip(asked_record_indices, near)], dtype=torch.bool)


def feature_fd(judge: Judge, a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between two image sets in the judge's feature space."""
    from core.evaluate import frechet_distance
    return frechet_distance(judge.features(a).double().numpy(), judge.features(b).double().numpy())


# --------------------------------------------------------------------------- augmentation


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels), borders replicated."""
    b, c, h, w = x.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32).expand(b).clamp_min(1e-3)
    r = int(math.ceil(3 * float(sigma.max())))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)        # [b*c, 2r+1]
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def round_trip(x: torch.Tensor, size: int) -> torch.Tensor:
    """Down to ``size`` (area) and back up (bilinear): what a low-resolution drawing looks like."""
    h = x.shape[-1]
    low = F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(low, size=(h, h), mode="bilinear", align_corners=False)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def geometric(x: torch.Tensor, gen: torch.Generator, shift: float = 3.0, scale: tuple = (0.8, 1.1),
              out: int = RESOLUTION) -> torch.Tensor:
    """Random scale and translation (by up to ``shift`` output pixels) on a white background,
    resampled from the (larger) input, then area-resized to ``out``."""
    b, _, h, _ = x.shape
    s = _uniform(b, *scale, gen)
    t = _uniform(2 * b, -1, 1, gen).view(b, 2) * (2 * shift / out)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, (b, 3, h, h), align_corners=False)
    y = F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1
    return F.interpolate(y, size=(out, out), mode="area") if h != out else y


def colour_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Small brightness, contrast, saturation and per-channel gain changes (in [-1, 1])."""
    b = x.shape[0]
    u = (x + 1) / 2
    u = u * (1 + strength * _uniform(3 * b, -0.03, 0.03, gen).view(b, 3, 1, 1))
    grey = u.mean(1, keepdim=True)
    u = grey + (u - grey) * (1 + strength * _uniform(b, -0.15, 0.15, gen).view(b, 1, 1, 1))
    mean = u.mean((1, 2, 3), keepdim=True)
    u = mean + (u - mean) * (1 + strength * _uniform(b, -0.1, 0.1, gen).view(b, 1, 1, 1))
    u = u + strength * _uniform(b, -0.03, 0.03, gen).view(b, 1, 1, 1)
    return (u.clamp(0, 1) * 2 - 1)


def shift_exact(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translations by whole pixels (up to ``shift``) on white: the render's own pixels, no resampling."""
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=1.0)
    offs = torch.randint(2 * shift + 1, (b, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])


def augment_real(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What must still pass as an emoji: colour jitter, then one of: nothing, a 16 px round
    trip, a mild blur (sigma 0.3-1), faint noise."""
    x = colour_jitter(x, gen)
    b = x.shape[0]
    kind = torch.randint(4, (b,), generator=gen)
    out = x.clone()
    m = kind == 1
    if m.any():
        out[m] = round_trip(x[m], 16)
    m = kind == 2
    if m.any():
        out[m] = gaussian_blur(x[m], _uniform(int(m.sum()), 0.3, 1.0, gen))
    m = kind == 3
    if m.any():
        out[m] = x[m] + _uniform(int(m.sum()), 0.0, 0.05, gen).view(-1, 1, 1, 1) * torch.randn(
            x[m].shape, generator=gen)
    return out.clamp(-1, 1)


def silhouette(x: torch.Tensor, threshold: float = 0.08) -> torch.Tensor:
    """[B,1,H,W] 1 where the image differs from its white background."""
    return ((1 - x).abs().amax(1, keepdim=True) > 2 * threshold).float()


def _few_colours(x: torch.Tensor, mask: torch.Tensor, k: int, gen: torch.Generator, iters: int = 4) -> torch.Tensor:
    """Each pixel replaced by the nearest of k colours (k-means started on random pixels of the silhouette)."""
    b, c, h, w = x.shape
    px = x.flatten(2).transpose(1, 2)                        # [B, HW, 3]
    weight = mask.flatten(1) + 1e-6                          # pick starting pixels inside the silhouette
    start = torch.multinomial(weight, k, replacement=True, generator=gen)
    centres = torch.gather(px, 1, start[..., None].expand(b, k, c))
    for _ in range(iters):
        assign = torch.cdist(px, centres).argmin(2)          # [B, HW]
        onehot = F.one_hot(assign, k).float() * weight[..., None]
        centres = (onehot.transpose(1, 2) @ px) / onehot.sum(1)[..., None].clamp_min(1e-6)
    assign = torch.cdist(px, centres).argmin(2)
    return torch.gather(centres, 1, assign[..., None].expand(b, h * w, c)).transpose(1, 2).reshape(b, c, h, w)


def _shuffle_patches(x: torch.Tensor, patch: int, gen: torch.Generator) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, patch, stride=patch)                  # [B, c*p*p, L]
    perm = torch.argsort(torch.rand(b, cols.shape[2], generator=gen), dim=1)
    cols = torch.gather(cols, 2, perm[:, None, :].expand_as(cols))
    return F.fold(cols, (h, w), patch, stride=patch)


def _smooth_field(b: int, size: int, sigma: torch.Tensor, gen: torch.Generator, channels: int = 2) -> torch.Tensor:
    """Smooth random fields [b, channels, size, size], each scaled to a root mean square of 1."""
    f = gaussian_blur(torch.randn(b, channels, size, size, generator=gen), sigma)
    return f / f.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-6).view(b, 1, 1, 1)


def elastic_warp(x: torch.Tensor, amplitude: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image resampled along a smooth random displacement field of ``amplitude`` pixels
    (root mean square; correlation length ``sigma`` pixels), on white: outlines wobble,
    features smear."""
    b, _, h, w = x.shape
    disp = _smooth_field(b, h, sigma, gen) * amplitude.view(b, 1, 1, 1) * (2 / h)
    theta = torch.eye(2, 3).expand(b, 2, 3)
    grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False) + disp.permute(0, 2, 3, 1)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def degrade(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """A real emoji (after :func:`geometric`) made into something that is not an emoji."""
    b = x.shape[0]
    if kind == "blur":           # strong Gaussian blur (a 16 px round trip is about sigma 0.8)
        y = gaussian_blur(x, _uniform(b, 2.0, 4.0, gen))
    elif kind == "pixelate":     # a round trip through 8 or 4 px
        size = 8 if torch.rand(1, generator=gen).item() < 0.7 else 4
        y = round_trip(x, size)
    elif kind == "noise":        # heavy additive noise, sometimes on a blurred image
        base = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, x,
                           gaussian_blur(x, _uniform(b, 1.0, 2.5, gen)))
        y = base + _uniform(b, 0.25, 0.8, gen).view(b, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    elif kind in ("mean_blob", "colour_blob"):
        mask = silhouette(x)
        soft = gaussian_blur(mask, _uniform(b, 1.0, 3.0, gen))
        sharp = (soft > 0.5).float()
        use_soft = torch.rand(b, 1, 1, 1, generator=gen) < 0.5
        m = torch.where(use_soft, soft, sharp)
        if kind == "mean_blob":
            fill = (x * mask).sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True).clamp_min(1)
            fill = fill.expand_as(x)
        else:
            k = int(torch.randint(2, 5, (1,), generator=gen))
            blurred = gaussian_blur(x, _uniform(b, 1.5, 3.0, gen))
            fill = _few_colours(blurred, mask, k, gen)
            fill = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, fill,
                               gaussian_blur(fill, _uniform(b, 0.5, 1.5, gen)))
        y = m * fill + (1 - m)
    elif kind == "shuffle":
        patch = 4 if torch.rand(1, generator=gen).item() < 0.5 else 8
        y = _shuffle_patches(x, patch, gen)
    elif kind == "warp":         # a strong elastic warp: the colours and edges stay, the drawing goes
        y = elastic_warp(x, _uniform(b, 3.0, 6.0, gen), _uniform(b, 1.5, 3.0, gen), gen)
    elif kind == "smear":        # warped, then reduced to a few flat colours: a watercolour blob
        y = elastic_warp(x, _uniform(b, 2.0, 4.0, gen), _uniform(b, 1.5, 4.0, gen), gen)
        k = int(torch.randint(3, 6, (1,), generator=gen))
        mask = silhouette(y)
        y = mask * _few_colours(gaussian_blur(y, _uniform(b, 0.5, 1.5, gen)), mask, k, gen) + (1 - mask)
    elif kind == "chimera":      # pieces of two emoji joined along a smooth random seam
        other = x[torch.randperm(b, generator=gen)]
        field = _smooth_field(b, x.shape[-1], _uniform(b, 3.0, 6.0, gen), gen, 1)
        mask = (field > field.flatten(1).median(1).values.view(b, 1, 1, 1)).float()   # about half of each
        y = mask * x + (1 - mask) * other
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from "
                         f"{', '.join(k for k in NEGATIVE_KINDS if k not in SAMPLED_KINDS)}")
    return y.clamp(-1, 1)


# --------------------------------------------------------------------------- poor samples


def poor_samples(models, records: Sequence, n: int, seed: int, steps: Sequence[int] = (2, 3),
                 batch: int = 64, log: Callable[[str], None] | None = None) -> torch.Tensor:
    """[n,3,32,32] samples of the text base of ``models`` with ``steps`` DDIM steps (one of them
    per batch; guidance 3), from random captions of ``records``: what poor samplers (the
    committed text base with 2-3 steps) or early-training models (an early text base at 25
    steps) draw."""
    from core.data.emoji import random_caption
    from core.pipeline import BASE_DEFAULTS, generate_text

    model, encoder = models.get("text_base"), models.text_encoder()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, n, batch):
        m = min(batch, n - s)
        pick = torch.randint(len(records), (m,), generator=gen).tolist()
        prompts = [random_caption(records[i], gen) for i in pick]
        k = steps[int(torch.randint(len(steps), (1,), generator=gen))]
        # DDIM, whatever the bases' default sampler: these negatives are fixed by the recipe, not by the app
        settings = replace(BASE_DEFAULTS, sampler="ddim", steps=int(k))
        out.append(generate_text(model, encoder, prompts, "", [seed * 100003 + s + j for j in range(m)],
                                 settings).cpu())
        if log:
            log(f"  poor samples {s + m}/{n}")
    return torch.cat(out) if out else torch.zeros(0, 3, RESOLUTION, RESOLUTION)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is trained. ``batch`` real images and as many negatives per step;
    ``include_heldout`` False trains the twin that measures the recipe on the held-out split;
    ``negatives`` the kinds of negatives, drawn with equal chance ("poor" and "early" only with
    their banks); ``poor`` the number of poor samples of the committed text base (0: none;
    needs the checkpoints); ``early`` of samples of an early-training text base (0: none; see
    ``python -m core.judge train --early``); ``balance`` the exponent of the per-design
    re-weighting; ``max_train`` a seeded subset (tests)."""
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: int = 50
    width: int = 32
    label_smoothing: float = 0.1
    balance: float = 0.5
    design_weight: float = 0.5
    seed: int = 0
    include_heldout: bool = True
    negatives: tuple[str, ...] = NEGATIVE_KINDS
    poor: int = 256
    early: int = 0
    max_train: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "negatives", tuple(self.negatives))
        unknown = [k for k in self.negatives if k not in NEGATIVE_KINDS]
        if unknown or not self.negatives:
            raise ValueError(f"negatives must name some of {', '.join(NEGATIVE_KINDS)}; got {self.negatives!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not isinstance(self.batch, int) or self.batch < 2:
            raise ValueError(f"batch must be an integer >= 2, got {self.batch!r}")
        if self.poor < 0 or self.early < 0:
            raise ValueError(f"poor and early must be >= 0, got {self.poor!r}, {self.early!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "JudgeSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _lr_factor(step: int, settings: JudgeSettings) -> float:
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    rest = max(1, settings.steps - settings.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - settings.warmup) / rest)))


def _unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], exactly as ``EmojiDataset.images_at`` converts them."""
    return x.float().div_(127.5).sub_(1.0)


def training_indices(data, settings: JudgeSettings) -> torch.Tensor:
    idx = data.indices("all" if settings.include_heldout else "train")
    if settings.max_train is not None and settings.max_train < len(idx):
        gen = torch.Generator().manual_seed(settings.seed + 7919)
        idx = idx[torch.randperm(len(idx), generator=gen)[: settings.max_train].sort().values]
    return idx


def train_judge(data=None, settings: JudgeSettings | None = None, bank: torch.Tensor | None = None,
                early: torch.Tensor | None = None, log: Callable[[str], None] | None = print) -> Judge:
    """Train a judge on the real emoji (all, or the training split for the twin); ``bank`` is
    the poor samples and ``early`` the early-training samples among the negatives (None or
    empty: none of that kind)."""
    from core.data.emoji import load_dataset

    settings = settings or JudgeSettings()
    data = data if data is not None else load_dataset()
    log = log or (lambda s: None)
    t0, c0 = time.perf_counter(), time.process_time()
    subgroups = list(data.classes)
    designs = sorted({design_of(r) for r in data.records})
    d_index = {d: i for i, d in enumerate(designs)}
    idx = training_indices(data, settings)
    records = [data.records[i] for i in idx.tolist()]
    sub_y = torch.tensor([subgroups.index(r.subgroup) for r in records])
    des_y = torch.tensor([d_index[design_of(r)] for r in records])
    counts = torch.bincount(des_y, minlength=len(designs)).float()
    weights = counts[des_y].pow(-settings.balance)
    # uint8 in memory (128 px floats of every emoji would take 0.7 GB); the same values as images_at per batch
    source = torch.cat([((data.images_at(128, idx[s:s + 256]) + 1) * 127.5).round().to(torch.uint8)
                        for s in range(0, len(idx), 256)])
    crisp = data.images_at(RESOLUTION, idx)
    banks = {k: b for k, b in (("poor", bank), ("early", early)) if b is not None and len(b)}
    kinds = [k for k in settings.negatives if k not in SAMPLED_KINDS or k in banks]

    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = JudgeNet(len(subgroups), len(designs), settings.width)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, settings))
    model.train()
    running: dict[str, float] = {}
    b = settings.batch
    for step in range(settings.steps):
        pick = torch.multinomial(weights, b, replacement=True, generator=gen)
        neg_pick = torch.multinomial(weights, b, replacement=True, generator=gen)
        # a third of the positives are the 32 px renders themselves (whole-pixel shifts), so that crisp
        # real emoji are what the judge knows best; the rest are rescaled and shifted from 128 px
        exact = (torch.rand(b, generator=gen) < 1 / 3).view(b, 1, 1, 1)
        pos = torch.where(exact, shift_exact(crisp[pick], 2, gen), geometric(_unit_float(source[pick]), gen))
        pos = augment_real(pos, gen)
        base = geometric(_unit_float(source[neg_pick]), gen)
        kind_of = torch.randint(len(kinds), (b,), generator=gen)
        neg = base.clone()
        for ki, kind in enumerate(kinds):
            m = kind_of == ki
            if not m.any():
                continue
            if kind in SAMPLED_KINDS:
                j = torch.randint(len(banks[kind]), (int(m.sum()),), generator=gen)
                neg[m] = geometric(banks[kind][j], gen, shift=2.0, scale=(0.9, 1.05))
            elif kind in SHAPE_KINDS:
                # what breaks the drawing, then the positives' own softening (16 px round trip, mild blur,
                # faint noise), so that softness is no cue: only the drawing tells them apart
                neg[m] = augment_real(degrade(base[m], kind, gen), gen)
            else:
                neg[m] = colour_jitter(degrade(base[m], kind, gen), gen)
        out = model(torch.cat([pos, neg]))
        target = torch.cat([torch.ones(b), torch.zeros(b)])
        l_real = F.binary_cross_entropy_with_logits(out["realism"], target)
        l_sub = F.cross_entropy(out["subgroup"][:b], sub_y[pick], label_smoothing=settings.label_smoothing)
        l_des = F.cross_entropy(out["design"][:b], des_y[pick], label_smoothing=settings.label_smoothing)
        loss = l_real + l_sub + settings.design_weight * l_des
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in (("realism", l_real), ("subgroup", l_sub), ("design", l_des)):
            running[k] = v.item() if k not in running else 0.98 * running[k] + 0.02 * v.item()
        if (step + 1) % max(1, settings.steps // 10) == 0:
            log(f"  judge: step {step + 1}/{settings.steps} losses "
                + ", ".join(f"{k} {v:.3f}" for k, v in running.items())
                + f" ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    judge = Judge(model, subgroups, {})
    judge.set_reference(data if settings.include_heldout and settings.max_train is None else _subset(data, idx))
    thresholds = calibrate(judge, data, idx, settings.seed + 11)
    info = {
        "format_version": FORMAT_VERSION, "resolution": RESOLUTION, "width": settings.width,
        "threshold": round(thresholds["threshold"], 4), "manifold_threshold": round(thresholds["manifold_threshold"], 4),
        "manifold_quantile": MANIFOLD_QUANTILE,
        "settings": asdict(settings), "data_fingerprint": data_fingerprint(data),
        "parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("design.")),
        "designs": len(designs), "train_images": len(idx),
        "poor_samples": len(banks.get("poor", ())), "early_samples": len(banks.get("early", ())),
        "train_seconds": round(time.perf_counter() - t0, 1), "train_cpu_seconds": round(time.process_time() - c0, 1),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    judge.info = info
    judge.threshold, judge.manifold = info["threshold"], info["manifold_threshold"]
    return judge


# --------------------------------------------------------------------------- calibration


def calibrate(judge: Judge, data, indices, seed: int = 11, n: int = 512,
              quantile: float = MANIFOLD_QUANTILE) -> dict[str, float]:
    """The judge's two thresholds, each the ``quantile`` of its score on n real emoji of
    ``indices`` softened by a round trip through 16 px: ``threshold`` of the realism probability,
    ``manifold_threshold`` of the nearest-real-emoji similarity. So an image is accepted when the
    realism head rates it as a real emoji drawn at 16 px is rated, AND it lies as close to a real
    emoji as such a drawing does; each test passes all but ``quantile`` of those real emoji.

    Softness, not rescaling: the bases draw emoji at the data set's own scale and position, and
    the judge's features move more under a 0.8-1.1 rescale than under a 16 px round trip. The
    first calibration (the 10th percentile of the similarity of rescaled, shifted and softened
    real emoji: 0.90, with the head at 0.5) let pixel-base blobs and muddy faces through at
    0.90-0.94, while what a person reads as an emoji mostly lies above 0.95; a head at 0.5
    rejected 15% of real emoji through 16 px and good people drawn by the DiffAE decoder."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    idx = idx[torch.randperm(len(idx), generator=gen)[:n]]
    out = judge.outputs(round_trip(data.images_at(RESOLUTION, idx), 16))
    return {"threshold": float(out["realism"].quantile(quantile)),
            "manifold_threshold": float(judge.nearest(out["features"]).quantile(quantile))}


# --------------------------------------------------------------------------- measurement


def measure(judge: Judge, data, indices: Sequence[int], poor: torch.Tensor | None = None, seed: int = 1,
            k: int = 5, early: torch.Tensor | None = None) -> dict:
    """The judge's figures on real emoji ``indices``: acceptance of real renders (32 px, and
    16 px round trips), of each degradation (false accepts), of poor samples; subgroup top-1;
    retrieval@k of the 16 px round trips among the judge's reference (their design must be
    there)."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    real = data.images_at(RESOLUTION, idx)
    gen = torch.Generator().manual_seed(seed)
    real16 = round_trip(real, 16)
    subs = [data.records[i].subgroup for i in idx.tolist()]
    out: dict = {"n": len(idx)}
    for name, x in (("real", real), ("real_16px", real16)):
        o = judge.scores(x)
        out[f"{name}_accepted"] = float(o["accepted"].float().mean())
        out[f"{name}_accepted_head"] = float((o["realism"] > judge.threshold).float().mean())
        want = torch.tensor([judge.subgroup_index(s) for s in subs])
        out[f"{name}_subgroup_top1"] = float((o["subgroup"].argmax(1) == want).float().mean())
        out[f"{name}_recognisable"] = float(recognisability(judge, x, subs).float().mean())
    _, _, designs = judge.reference()
    known = set(designs)
    has = [j for j, i in enumerate(idx.tolist()) if design_of(data.records[i]) in known]
    # an index into the reference of a record with the same design (the reference may lack `i` itself)
    first = {}
    for j, d in enumerate(designs):
        first.setdefault(d, j)
    if has:
        asked = [first[design_of(data.records[int(idx[j])])] for j in has]
        out[f"real_16px_retrieval@{k}"] = float(retrieval(judge, real16[has], asked, k).float().mean())
        out["retrieval_n"] = len(has)
    base = geometric(data.images_at(128, idx), gen, shift=1.0, scale=(0.95, 1.05))
    negatives = {kind: degrade(base, kind, gen) for kind in NEGATIVE_KINDS if kind not in SAMPLED_KINDS}
    negatives.update({kind: x for kind, x in (("poor", poor), ("early", early)) if x is not None and len(x)})
    out["false_accept"], out["false_accept_head"] = {}, {}
    for kind, x in negatives.items():
        o = judge.scores(x)
        out["false_accept"][kind] = float(o["accepted"].float().mean())
        out["false_accept_head"][kind] = float((o["realism"] > judge.threshold).float().mean())
    return out


# --------------------------------------------------------------------------- card


def model_card(judge: Judge, twin: dict | None, own: dict) -> str:
    """The README.md of a trained judge: recipe and measured figures (``twin``: the figures of a
    twin trained on the training split, measured on the held-out split)."""
    i, s = judge.info, judge.info["settings"]
    early = (f"{i.get('early_samples', 0)} samples of an early-training text base at 25 DDIM steps (the "
             "project's first text base, 1,953 steps, from git history) from random training captions; "
             if i.get("early_samples") else "")
    L = ["# judge", "",
         "A small CNN that rejects what is not an emoji and says which emoji it is: the evaluator of "
         "generated images (`core/judge.py`). Trained by `python -m core.judge train` on all "
         f"{i['train_images']} real emoji of the Noto Color Emoji data set (both splits: it is an "
         "evaluator, like Inception for FID), 32x32.", "",
         f"- parameters: {i['parameters'] / 1e6:.3f} M (weights stored in fp16); "
         f"{len(judge.subgroups)} subgroups; trained also to tell {i['designs']} designs apart (an emoji up to "
         "skin tone and gender; that head is not stored)",
         f"- {s['steps']} steps of {s['batch']} real + {s['batch']} negative images, "
         f"{i['train_seconds'] / 60:.1f} min ({i['train_cpu_seconds'] / 60:.1f} CPU min) on {i['threads']} thread(s)",
         "- heads: realism (emoji / not an emoji), subgroup, design; features = the pooled penultimate "
         f"layer ({judge.model.realism.in_features}-d), the space of retrieval and FD(judge)",
         f"- **accepted as an emoji** when the realism probability is above {judge.threshold} AND the image "
         "lies on the real emoji's manifold in the judge's features: its cosine similarity to the nearest "
         f"real emoji is at least {judge.manifold} (the k-NN test of improved precision, Kynkaanniemi et al. "
         "2019, with k = 1 and one radius). Both thresholds are the "
         f"{judge.info.get('manifold_quantile', 0.05) * 100:g}th percentile of their score on real emoji "
         "softened by a round trip through 16 px: each test passes all but that share of real emoji drawn "
         "at 16 px. The head alone accepts most blobs of today's pixel bases; the manifold test rejects them.",
         "",
         "## Recipe", "",
         "Positives: real emoji (sampled with weight count(design)^-0.5), a third as the 32 px renders shifted by "
         "whole pixels (up to 2), the rest rescaled (0.8-1.1) and shifted (up to 3 px) from 128 px on white; "
         "small colour jitter; then one of: nothing, a round trip through 16x16, a Gaussian blur of sigma "
         "0.3-1, noise of sigma up to 0.05. Negatives (as many): real emoji rescaled and shifted the same way, "
         "then one of, with equal chance: Gaussian blur of sigma 2-4; a round trip through 8x8 or 4x4; "
         "additive noise of sigma 0.25-0.8 (half of them on a blurred image); the emoji's mean colour in its "
         "silhouette (soft or sharp); 2-4 colours of its blurred self (k-means) in its silhouette; its 4 or "
         "8 px patches shuffled; an elastic warp (random smooth displacements of 3-6 px RMS); a warp reduced "
         "to 3-5 flat colours (a watercolour blob); halves of two emoji joined along a random smooth seam "
         "(these six then softened like the positives, so that softness is no cue); "
         f"{i['poor_samples']} samples of the committed text base with 2-3 DDIM steps (guidance 3, random "
         f"training captions); {early}then small colour jitter. No sample of a committed base at its usual "
         "step count is a negative. "
         "Loss: BCE (realism) + cross-entropy (subgroup) + 0.5 cross-entropy (design), both "
         f"label-smoothed {s['label_smoothing']}, on the positives; AdamW lr {s['lr']}, weight decay "
         f"{s['weight_decay']}, warm-up {s['warmup']} then cosine, seed {s['seed']}.", "",
         "```json", json.dumps(s, indent=1), "```", "",
         "## Measured", ""]
    head = ["images", "real accepted (head alone)", "real 16 px accepted (head alone)", "subgroup top-1 (real)",
            "subgroup top-1 (16 px)", "retrieval@5 (16 px)"]
    L += ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]

    def row(name, d):
        r5 = d.get("real_16px_retrieval@5")
        return (f"| {name} | {d['real_accepted']:.3f} ({d['real_accepted_head']:.3f}) | "
                f"{d['real_16px_accepted']:.3f} ({d['real_16px_accepted_head']:.3f}) | "
                f"{d['real_subgroup_top1']:.3f} | {d['real_16px_subgroup_top1']:.3f} | "
                f"{'-' if r5 is None else f'{r5:.3f}'} |")
    sets = ([(f"held-out split ({twin['n']}), judged by a twin trained the same way on the training split only",
              twin)] if twin is not None else []) + [(f"all {own['n']} emoji, this judge (seen in training)", own)]
    L += [row(name, d) for name, d in sets]
    L += ["", "False accepts (share of negatives accepted as an emoji; the realism head alone in brackets):", ""]
    cols = ["negatives"] + [("twin, held-out split" if d is twin else "this judge, all emoji") for _, d in sets]
    L += ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for kind in own["false_accept"]:
        L.append(f"| {kind} | " + " | ".join(
            f"{d['false_accept'].get(kind, float('nan')):.3f} ({d['false_accept_head'].get(kind, float('nan')):.3f})"
            for _, d in sets) + " |")
    L += ["",
          "False reject = 1 - accepted. The twin retrieves from and measures the manifold on the training "
          "split, so a held-out emoji counts as on the manifold only when it is close to another emoji; "
          "this judge's reference holds every emoji. False accepts are on freshly degraded images (other "
          "seeds) and on poor and early samples made with other seeds and held-out captions. Retrieval@5: "
          "the emoji's design is among the designs of the 5 real emoji nearest to its 16 px round trip "
          "(for the twin only held-out emoji whose design has another skin tone or gender in the training "
          "split count" + (f": {twin.get('retrieval_n', 0)} of {twin['n']}" if twin else "") + ").", ""]
    return "\n".join(L)


# --------------------------------------------------------------------------- CLI


def _train_cli(args) -> int:
    from core.models.modelset import ModelSet
    from core.data.emoji import load_dataset

    data = load_dataset()
    log = lambda s: print(s, flush=True)  # noqa: E731
    early_n = args.early_n if args.early_n is not None else (384 if args.early else 0)
    if early_n and not args.early:
        raise JudgeError("--early-n needs --early: the checkpoints root of an early-training text base")
    settings = JudgeSettings(**{k: v for k, v in (("steps", args.steps), ("poor", args.poor), ("seed", args.seed),
                                                  ("early", early_n)) if v is not None})
    heldout = data.indices("heldout").tolist()
    train_records = [data.records[i] for i in data.indices("train").tolist()]
    bank = eval_poor = early_bank = early_eval = None
    if settings.poor:
        # captions of the training split for the banks (the twin never sees a held-out caption), of the
        # held-out split (other seeds) for measuring
        models = ModelSet(args.checkpoints, "cpu")
        log(f"poor samples: {settings.poor} for training, 256 for measuring (text base, 2-3 DDIM steps)")
        bank = poor_samples(models, train_records, settings.poor, settings.seed)
        eval_poor = poor_samples(models, [data.records[i] for i in heldout], 256, settings.seed + 1)
    if settings.early:
        early = ModelSet(args.early, "cpu")
        log(f"early samples: {settings.early} for training, 64 for measuring (text base of {args.early}, 25 steps)")
        early_bank = poor_samples(early, train_records, settings.early, settings.seed + 2, steps=(25,), log=log)
        early_eval = poor_samples(early, [data.records[i] for i in heldout], 64, settings.seed + 3, steps=(25,))
    twin = None
    if args.exclude_heldout or args.twin:
        log("twin (training split only), to measure on the held-out split:")
        t = train_judge(data, replace(settings, include_heldout=False), bank, early_bank, log)
        t.set_reference(_subset(data, data.indices("train")))
        twin = measure(t, data, heldout, eval_poor, early=early_eval)
        log(f"twin on the held-out split: {json.dumps(twin)}")
        if args.exclude_heldout:
            t.info["measured"] = {"heldout_twin": twin}
            t.save(args.out, model_card(t, twin, twin))
            log(f"wrote {args.out}")
            return 0
    log("judge (all emoji):")
    judge = train_judge(data, settings, bank, early_bank, log)
    own = measure(judge, data, range(len(data)), eval_poor, early=early_eval)
    log(f"judge on all emoji: {json.dumps(own)}")
    judge.info["measured"] = {"all": own, **({"heldout_twin": twin} if twin else {})}
    judge.save(args.out, model_card(judge, twin, own))
    log(f"wrote {args.out}")
    return 0


class _subset:
    """A view of a data set restricted to some records (the twin's retrieval reference)."""

    def __init__(self, data, indices):
        self._data, self._idx = data, torch.as_tensor(indices, dtype=torch.long)
        self.records = [data.records[i] for i in self._idx.tolist()]

    def images_at(self, resolution, indices=None):
        idx = self._idx if indices is None else self._idx[torch.as_tensor(indices, dtype=torch.long)]
        return self._data.images_at(resolution, idx)


def _score_cli(args) -> int:
    from core.images import open_image, pil_to_tensor

    judge = Judge.load(args.judge)
    images = torch.cat([pil_to_tensor(open_image(p), size=RESOLUTION) for p in args.images])
    near = None
    try:
        out = judge.scores(images)
        data, ref, _ = judge.reference()
        near = (F.normalize(out["features"], dim=1) @ ref.T).topk(min(3, ref.shape[0]), dim=1).indices.tolist()
    except (OSError, ValueError) as e:  # no data set here: the realism head alone, no nearest emoji
        print(f"(no real emoji to compare with: {e}; the realism head alone decides)", file=sys.stderr)
        out = judge.outputs(images)
        out["accepted"] = out["realism"] > judge.threshold
    for j, path in enumerate(args.images):
        top = out["subgroup"][j].softmax(0).topk(3)
        subs = ", ".join(f"{judge.subgroups[i]} {v:.2f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        line = (f"{path}: {'emoji' if out['accepted'][j] else 'NOT an emoji'} (realism {float(out['realism'][j]):.3f}"
                + (f", nearest-emoji similarity {float(out['nearest'][j]):.3f}" if "nearest" in out else "")
                + f"); subgroup {subs}")
        if near is not None:
            line += "; nearest real emoji: " + ", ".join(data.records[i].name for i in near[j])
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from core.models.checkpoints import CheckpointError
    from core.images import ImageError

    p = argparse.ArgumentParser(prog="python -m core.judge", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the judge (and measure it) and write its checkpoint folder")
    t.add_argument("--out", default=str(DEFAULT_FOLDER))
    t.add_argument("--steps", type=int, help=f"training steps (default {JudgeSettings.steps})")
    t.add_argument("--poor", type=int,
                   help=f"poor text-base samples among the negatives (default {JudgeSettings.poor}; 0: none)")
    t.add_argument("--early", help="checkpoints root of an early-training text base (and its clip): its 25-step "
                   "samples join the negatives, e.g. the project's first text base (git show d29b43f:checkpoints/...)")
    t.add_argument("--early-n", type=int, help="how many early samples (default 384 with --early)")
    t.add_argument("--seed", type=int)
    t.add_argument("--twin", action="store_true", help="also train a twin on the training split and report "
                   "its figures on the held-out split in the card")
    t.add_argument("--exclude-heldout", action="store_true", help="only train (and write) the twin")
    t.add_argument("--checkpoints", help="checkpoints root with text_base and clip (for the poor samples)")
    t.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("score", help="judge images: emoji or not, subgroup, nearest real emoji")
    s.add_argument("images", nargs="+")
    s.add_argument("--judge", help=f"judge folder (default {DEFAULT_FOLDER})")
    s.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train_cli(args) if args.command == "train" else _score_cli(args)
    except (JudgeError, CheckpointError, ImageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Judge", "JudgeNet", "JudgeSettings", "JudgeError", "design_of", "is_people", "recognisability",
           "retrieval", "feature_fd", "train_judge", "calibrate", "measure", "degrade", "augment_real", "round_trip",
           "gaussian_blur", "poor_samples", "NEGATIVE_KINDS", "PEOPLE_GROUP"]
