"""Editing in h-space, the UNet bottleneck (Kwon et al. 2023, "Diffusion Models already have a
Semantic Latent Space", Asyrp).

h is the output of the UNet's middle block (`model.net.mid_block` of the diffusers
UNet2DModel / UNet2DConditionModel), read and shifted with a forward hook. An edit:

1. x_T = DDIM inversion of the image (eta = 0, Song et al. 2021 sec. 4.3) under the model's
   unconditional input (empty prompt / null label), so plain DDIM from x_T reconstructs it;
2. DDIM back from x_T; during the early reverse steps (t >= t_edit, the first `interval` of the
   process counted from t = T) h becomes h + strength * direction(t), and the step takes the
   predicted x0 from the shifted network but the direction to x_t from the plain one: the
   asymmetric reverse process of Asyrp (sec. 3.2),
       x_{t'} = sqrt(ab_{t'}) P_t(eps(x_t | h + dh)) + sqrt(1 - ab_{t'}) eps(x_t | h),
   with P_t the x0 prediction of DDIM's eq. (12). Shifting both terms largely cancels (Asyrp's
   observation); strength 0 is the plain DDIM reconstruction.

Directions. Asyrp learns dh with a CLIP loss; here, as in the simpler mean-difference variants
(Haas et al. 2023, "Discovering interpretable directions in h-space"), a direction is the mean
of h over images with the attribute minus the mean over images without it, at the same t:
direction(t) = E[h(x_t) | positive] - E[h(x_t) | negative], x_t ~ q(x_t | x0), fitted at a few
anchor times and used at the nearest one. Strength 1 therefore moves h by the whole difference
of the two class means. Labels are those of the DiffAE attributes (core.diffae.attribute_labels:
dark-skin, woman, smiling), from the emoji data set's training split.

Files: `hspace.safetensors` in the model's checkpoint folder: `directions` [K, A, C, h, w]
(K attributes, A anchor times), `times` [A]; metadata: the attribute names and the sha256 of the
model weights they were fitted for (a retrained model needs new directions).
Hooks act only on calls from the thread that installed them, so concurrent requests that share
a model (the app) do not see each other's edits.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from core.checks import check_finite, check_range
from core.diffae import attribute_labels
from core.diffusion.samplers import ddim_invert, sampler_timesteps
from core.models.checkpoints import WEIGHTS_FILE, CheckpointError
from core.models.networks import DiffusionModel

DIRECTIONS_FILE = "hspace.safetensors"
ANCHORS = 10                 # anchor times for the directions, evenly spaced over 0..T-1
MAX_PER_CLASS = 128          # labelled images per class used to fit a direction
MAX_STRENGTH = 5.0           # in units of the class-mean difference
DEFAULT_INTERVAL = 0.5       # edit during the first half of the reverse process (t >= T/2)
DEFAULT_STEPS = 20
KINDS = ("text_base", "class_base")


# ---- the hook ------------------------------------------------------------------------------------
def _mid_block(model: DiffusionModel) -> torch.nn.Module:
    if getattr(model, "kind", None) not in KINDS or getattr(model.net, "mid_block", None) is None:
        raise ValueError(f"h-space needs a text_base or class_base model with a UNet mid block, "
                         f"got kind {getattr(model, 'kind', type(model).__name__)!r}")
    return model.net.mid_block


@contextlib.contextmanager
def mid_block_hook(model: DiffusionModel, fn: Callable[[Tensor], Tensor | None]) -> Iterator[None]:
    """Within the context, the mid block's output h is replaced by fn(h) (None: unchanged) on
    calls from this thread; calls from other threads are untouched."""
    owner = threading.get_ident()

    def hook(module, args, output):
        return fn(output) if threading.get_ident() == owner else None

    handle = _mid_block(model).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _expand(cond: dict[str, Tensor], batch: int) -> dict[str, Tensor]:
    """A batch-1 (or batch-`batch`) cond dict as batch `batch`."""
    out = {}
    for k, v in cond.items():
        if v.shape[0] not in (1, batch):
            raise ValueError(f"cond[{k!r}] has batch {v.shape[0]}, expected 1 or {batch}")
        out[k] = v.expand(batch, *v.shape[1:]) if v.shape[0] == 1 else v
    return out


@torch.no_grad()
def bottleneck(model: DiffusionModel, x_t: Tensor, t: float, cond: dict[str, Tensor]) -> Tensor:
    """h = the mid block's output for x_t at time t, [B, C, h, w]."""
    seen: list[Tensor] = []

    def keep(h: Tensor) -> None:
        seen.append(h.detach())

    with mid_block_hook(model, keep):
        model.eps(x_t, torch.full((x_t.shape[0],), float(t), device=x_t.device), _expand(cond, x_t.shape[0]))
    return seen[0]


# ---- directions ----------------------------------------------------------------------------------
def _weights_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    with open(folder / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class HDirections:
    """Mean-difference directions in h-space: `directions` [K, A, C, h, w] for the K `names` at
    the A anchor `times`."""
    names: list[str]
    times: Tensor
    directions: Tensor
    counts: dict[str, list[int]]         # per attribute: [positives, negatives] used

    def index(self, attribute: str) -> int:
        if attribute not in self.names:
            raise ValueError(f"unknown attribute {attribute!r}; valid attributes: {', '.join(self.names)}")
        return self.names.index(attribute)

    def at(self, attribute: str, t: float) -> Tensor:
        """The direction of `attribute` at the anchor time nearest to t, [C, h, w]."""
        k = self.index(attribute)
        return self.directions[k, int((self.times - float(t)).abs().argmin())]

    def save(self, model_folder: str | os.PathLike) -> Path:
        """Write `hspace.safetensors` into the model's checkpoint folder (atomically), tagged with
        the sha256 of its weights."""
        folder = Path(model_folder)
        meta = {"attributes": json.dumps(self.names), "counts": json.dumps(self.counts),
                "model_sha256": _weights_hash(folder),
                "definition": "mean h(x_t) of positives minus negatives at each anchor time; h = mid_block output"}
        tmp = folder / f".{DIRECTIONS_FILE}.tmp"
        save_file({"directions": self.directions.half().contiguous(), "times": self.times.float().contiguous()},
                  str(tmp), metadata=meta)   # fp16, like the weights: every committed version stays in git
        tmp.chmod(0o644)
        os.replace(tmp, folder / DIRECTIONS_FILE)
        return folder / DIRECTIONS_FILE

    @classmethod
    def load(cls, model_folder: str | os.PathLike) -> HDirections:
        folder = Path(model_folder)
        path = folder / DIRECTIONS_FILE
        if not path.is_file():
            raise CheckpointError(f"{folder} has no {DIRECTIONS_FILE} (fit the h-space directions with "
                                  f"`python -m core mechanics hspace-directions --model {folder.name}`)")
        try:
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
            d = cls(json.loads(meta["attributes"]), tensors["times"], tensors["directions"].float(),
                    json.loads(meta.get("counts", "{}")))
        except Exception as e:  # JSON, missing keys, and safetensors' own error types
            raise CheckpointError(f"{path} cannot be read: {e}") from e
        if meta.get("model_sha256") != _weights_hash(folder):
            raise CheckpointError(f"{path} was fitted for other weights than {folder / WEIGHTS_FILE}; refit it with "
                                  f"`python -m core mechanics hspace-directions --model {folder.name}`")
        if d.directions.ndim != 5 or d.directions.shape[:2] != (len(d.names), len(d.times)):
            raise CheckpointError(f"{path}: {len(d.names)} names and {len(d.times)} times but directions of shape "
                                  f"{tuple(d.directions.shape)}")
        return d


@torch.no_grad()
def fit_directions(model: DiffusionModel, cond: dict[str, Tensor], images: Tensor,
                   labels: dict[str, tuple[Tensor, Tensor]], anchors: int = ANCHORS, batch: int = 64,
                   seed: int = 0, log: Callable[[str], None] = lambda s: None) -> HDirections:
    """Directions from `images` [N, 3, r, r] in [-1, 1] and, per attribute, (row indices into
    images, 0/1 labels): at each anchor t, mean h(x_t) of the 1s minus mean h(x_t) of the 0s,
    with x_t = q(x_t | x0) from one seeded noise draw per image (the same draw at every t)."""
    _mid_block(model)
    if not isinstance(anchors, int) or anchors < 1:
        raise ValueError(f"anchors must be a positive integer, got {anchors!r}")
    device = next(model.parameters()).device
    times = torch.linspace(0, model.schedule.T - 1, anchors).round()
    names, directions, counts = [], [], {}
    for name, (idx, y) in labels.items():
        idx, y = torch.as_tensor(idx, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)
        pos, neg = idx[y == 1][:MAX_PER_CLASS], idx[y == 0][:MAX_PER_CLASS]
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError(f"attribute {name!r} needs images with and without it, got {len(pos)} and {len(neg)}")
        per_t = []
        for t in times.tolist():
            means = []
            for rows in (pos, neg):
                total = None
                for s in range(0, len(rows), batch):
                    part = rows[s:s + batch]
                    x0 = images[part].to(device, torch.float32)
                    noise = torch.cat([torch.randn((1, *x0.shape[1:]), generator=torch.Generator().manual_seed(
                        seed * 100003 + int(i))) for i in part]).to(device)
                    h = bottleneck(model, model.schedule.q_sample(x0, t, noise), t, cond).double().sum(0)
                    total = h if total is None else total + h
                means.append(total / len(rows))
            per_t.append((means[0] - means[1]).float())           # E[h | positive] - E[h | negative]
        names.append(name)
        directions.append(torch.stack(per_t).cpu())
        counts[name] = [len(pos), len(neg)]
        log(f"h-space direction {name!r}: {len(pos)} positives, {len(neg)} negatives, "
            f"|direction| at t=T/2: {float(per_t[len(per_t) // 2].norm()):.3f}")
    return HDirections(names, times, torch.stack(directions), counts)


def fit_from_dataset(model: DiffusionModel, cond: dict[str, Tensor], dataset, anchors: int = ANCHORS,
                     log: Callable[[str], None] = lambda s: None) -> HDirections:
    """Directions for the DiffAE attributes (core.diffae.attribute_labels) on the training split."""
    idx = dataset.indices("train")
    labels = attribute_labels([dataset.records[i] for i in idx.tolist()])
    if not labels:
        raise ValueError("the data set has no labelled examples for any attribute")
    images = dataset.images_at(model.resolution, idx)
    return fit_directions(model, cond, images, labels, anchors, log=log)


# ---- the edit ------------------------------------------------------------------------------------
def check_strength(strength) -> float:
    """An h-space edit strength: a finite number from -MAX_STRENGTH to MAX_STRENGTH."""
    return check_range("strength", strength, -MAX_STRENGTH, MAX_STRENGTH)


def check_interval(interval) -> float:
    interval = check_finite("interval", interval)
    if not 0 < interval <= 1:
        raise ValueError(f"interval (the edited fraction of the reverse process) must be in (0, 1], got {interval:g}")
    return interval


@dataclass
class HEdit:
    """x_T (the inverted image), the plain DDIM reconstruction and the edited image, [B, 3, r, r]."""
    x_T: Tensor
    reconstruction: Tensor
    edited: Tensor
    edited_steps: int                    # reverse steps with h shifted


@torch.no_grad()
def edit(model: DiffusionModel, cond: dict[str, Tensor], images: Tensor, direction: Callable[[float], Tensor] | None,
         strength: float, steps: int = DEFAULT_STEPS, interval: float = DEFAULT_INTERVAL,
         callback: Callable[[dict], None] | None = None) -> HEdit:
    """Invert `images` [B, 3, r, r] with DDIM, then run the asymmetric reverse process with
    h + strength * direction(t) for t >= t_edit = (1 - interval) (T - 1). `direction(t)` gives
    [C, h, w] (e.g. `HDirections.at` bound to an attribute); strength 0 (or no direction) is the
    plain DDIM reconstruction."""
    _mid_block(model)
    strength, interval = check_strength(strength), check_interval(interval)
    r = model.resolution
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1:] != (3, r, r):
        raise ValueError(f"images must be [B, 3, {r}, {r}] in [-1, 1], got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    device = next(model.parameters()).device
    x0 = images.to(device, torch.float32)
    schedule, b = model.schedule, x0.shape[0]
    cond = _expand(cond, b)
    double = {k: torch.cat([v, v]) for k, v in cond.items()}     # [plain; edited] in one forward

    def plain(x, t):
        return model.eps(x, t, cond)

    x_T = ddim_invert(plain, x0, schedule, steps)
    ts = sampler_timesteps("ddim", schedule, steps) + [-1.0]
    t_edit = (1 - interval) * (schedule.T - 1)
    shift: dict[str, Tensor | None] = {"dh": None}

    def shifted(h: Tensor) -> Tensor | None:
        dh = shift["dh"]
        if dh is None:
            return None
        # the batch is [plain; edited]: only the second half is shifted
        return torch.cat([h[:b], h[b:] + dh.to(h)])

    def run(active: bool) -> tuple[Tensor, int]:
        x, edited_steps = x_T, 0
        with mid_block_hook(model, shifted):
            for i in range(len(ts) - 1):
                t, t_next = ts[i], ts[i + 1]
                t_in = torch.full((b,), t, dtype=torch.float32, device=device)
                shifted_now = active and t >= t_edit
                if shifted_now:
                    shift["dh"] = strength * direction(t).to(device)
                    eps, eps_edit = model.eps(torch.cat([x, x]), torch.cat([t_in, t_in]), double).chunk(2)
                    shift["dh"] = None
                    edited_steps += 1
                else:
                    eps = eps_edit = plain(x, t_in)
                a, a_next = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(t_next))
                x0_pred = (x - math.sqrt(1 - a) * eps_edit) / math.sqrt(a)      # P_t, DDIM eq. (12), from h + dh
                x = math.sqrt(a_next) * x0_pred + math.sqrt(1 - a_next) * eps   # + D_t from the plain h (Asyrp)
                if callback is not None:
                    callback({"step": i, "total": len(ts) - 1, "t": t, "x": x, "x0": x0_pred, "shifted": shifted_now})
        return x.clamp(-1, 1), edited_steps

    reconstruction, _ = run(False)
    if strength == 0 or direction is None:
        return HEdit(x_T, reconstruction, reconstruction.clone(), 0)
    edited, n = run(True)
    return HEdit(x_T, reconstruction, edited, n)
