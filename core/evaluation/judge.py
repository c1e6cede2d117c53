"""The judge: a small CNN that tells an emoji from what is not one, and says which it is.

An evaluator of generated images (as Inception is for FID), trained on ALL real emoji of the
data set (both splits) at 32x32 (:mod:`core.training.judge`), with three heads on one
:class:`core.models.small_cnn.SmallCNN` trunk (four 3x3 convs, widths w, 2w, 4w, 4w, global
average pooling):

- **realism**: one logit, "is an emoji" vs "not an emoji" (trained against real emoji degraded
  heavily and poor samples of the text base, :mod:`core.training.judge_images`); an image is
  accepted when the realism head AND the manifold test (:meth:`Judge.scores`) pass it;
- **subgroup**: the data set's ~100 subgroups (the class labels);
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

Command line (:mod:`core.cli.judge`)::

    python -m core train judge [--export DIR] [--steps N] [--exclude-heldout] [--checkpoints DIR] [--threads N]
    python -m core judge score IMAGE... [--judge DIR]
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.data.emoji import load_dataset
from core.metrics import frechet_distance
from core.models.checkpoints import DEFAULT_CHECKPOINTS, CheckpointError, load_state_checked, read_folder, save_folder
from core.models.small_cnn import SmallCNN, to_resolution

RESOLUTION = 32
FORMAT_VERSION = 1
PEOPLE_GROUP = "People & Body"
DEFAULT_FOLDER = DEFAULT_CHECKPOINTS / "judge"

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
    dancing" share a design, and "kiss: woman, man" is "kiss".

    Not :func:`core.data.emoji.design_of` (by which the bases' training draws emoji), on
    purpose: the two rules part the 3,655 emoji differently (1,677 designs here, 1,683 there).
    That one drops gender words from the name in any group, but a name that is nothing else stays
    itself ("man", "woman", "girl" are three designs there, one "person" and one "child" here),
    keeps "woman: red hair" apart from "person: red hair" and "old man" from "older person", and
    drops qualifiers without letters ("keycap: #" and "keycap: 1" are one design there, and every
    "family: ..." is "family"); this one makes the people of one drawing one design and keeps each
    keycap and each family's members apart. This rule is the judge's recipe: its design head was
    trained on it and :func:`retrieval` counts a hit by it, so the committed judge's figures hold
    for this rule only."""
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

    def set_reference(self, data) -> Judge:
        """Retrieve from the real 32 px renders of every record of ``data`` (features computed
        once here)."""
        feats = F.normalize(self.features(data.images_at(RESOLUTION)), dim=1)
        self._reference = (data, feats, [design_of(r) for r in data.records])
        return self

    def reference(self):
        """(data set, L2-normalised features [N, D], design per record) of the retrieval set."""
        if self._reference is None:
            self.set_reference(load_dataset())
        return self._reference

    # ---- I/O

    def save(self, folder: str | Path, card: str) -> Path:
        """config.json + fp16 model.safetensors (without the training-only design head) + README.md,
        written atomically."""
        config = {**self.info, "kind": "judge", "subgroups": self.subgroups}
        state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("design.")}
        return save_folder(folder, config, state, card)

    @classmethod
    def load(cls, folder: str | Path | None = None, device: str | torch.device = "cpu") -> Judge:
        folder = Path(folder) if folder is not None else DEFAULT_FOLDER
        try:
            config, state = read_folder(folder)
        except CheckpointError as e:
            raise JudgeError(f"judge: {e} (train one with `python -m core train judge --export {folder}`)") from e
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


def retrieval(judge: Judge, images: torch.Tensor, asked_record_indices: Sequence, k: int = 5) -> torch.Tensor:
    """[B] bool: the design of the asked record (an index into the judge's reference data set)
    is among the designs of the k real emoji nearest to the image (cosine similarity of the
    judge's features). An entry may also be a collection of indices (the emoji a person would
    accept for an everyday prompt): a hit when any of their designs is among those k. A real
    render finds itself; the informative reference is a real emoji blurred to 16 px."""
    if len(asked_record_indices) != len(images):
        raise ValueError(f"got {len(asked_record_indices)} asked records for {len(images)} images")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    _, ref, designs = judge.reference()
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.bool)
    asked = []
    for a in asked_record_indices:
        a = a.tolist() if isinstance(a, torch.Tensor) else a
        several = isinstance(a, (list, tuple, set, frozenset))
        asked.append({designs[int(i)] for i in a} if several else {designs[int(a)]})
    sims = F.normalize(judge.features(images), dim=1) @ ref.T
    near = sims.topk(min(k, ref.shape[0]), dim=1).indices.tolist()
    return torch.tensor([bool(want & {designs[j] for j in row}) for want, row in zip(asked, near)], dtype=torch.bool)


def feature_fd(judge: Judge, a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between two image sets in the judge's feature space."""
    return frechet_distance(judge.features(a).double().numpy(), judge.features(b).double().numpy())


def round_trip(x: torch.Tensor, size: int) -> torch.Tensor:
    """Down to ``size`` (area) and back up (bilinear): what a low-resolution drawing looks like."""
    h = x.shape[-1]
    low = F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(low, size=(h, h), mode="bilinear", align_corners=False)


__all__ = ["Judge", "JudgeNet", "JudgeError", "design_of", "is_people", "recognisability", "retrieval", "feature_fd",
           "round_trip", "DEFAULT_FOLDER", "FORMAT_VERSION", "PEOPLE_GROUP", "RESOLUTION"]
