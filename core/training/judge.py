"""Training the judge (:mod:`core.evaluation.judge`): the recipe (:class:`JudgeSettings`,
:func:`train_judge`), its two thresholds (:func:`calibrate`), its measured figures
(:func:`measure`) and its model card (:func:`model_card`).

Trained on ALL real emoji of the data set (both splits: it is an evaluator, like Inception for
FID), or on the training split for the twin that measures the recipe on the held-out split.
Each step: real emoji augmented (:func:`core.training.judge_images.augment_real`) against as
many negatives (:func:`core.training.judge_images.degrade`, and poor samples of the committed
text base with 2-3 DDIM steps, :func:`poor_samples`); the loss is BCE on the realism logit plus
cross-entropy of the subgroup and design heads on the positives.

The registered training task ``python -m core train judge`` (:class:`JudgeTask`, through the shared
loop :func:`core.optim.fit`; ``python -m core judge train`` is the same command under its older
name): :func:`run_judge` makes the negatives, trains (and the held-out twin), measures and writes
the checkpoint folder with its card.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.emoji import load_dataset, random_caption
from core.evaluation.classifiers import data_fingerprint
from core.evaluation.judge import (
    DEFAULT_FOLDER,
    FORMAT_VERSION,
    RESOLUTION,
    Judge,
    JudgeNet,
    design_of,
    recognisability,
    retrieval,
    round_trip,
)
from core.models.modelset import ModelSet
from core.optim import fit
from core.pipeline import BASE_DEFAULTS, generate_text
from core.training.judge_images import (
    NEGATIVE_KINDS,
    SAMPLED_KINDS,
    SHAPE_KINDS,
    augment_real,
    colour_jitter,
    degrade,
    geometric,
    shift_exact,
)
from core.training.task import Budget, FitTask, claim_run

MANIFOLD_QUANTILE = 0.05   # of real emoji through 16 px that each test (realism head, manifold) may reject


# --------------------------------------------------------------------------- poor samples


def poor_samples(models, records: Sequence, n: int, seed: int, steps: Sequence[int] = (2, 3),
                 batch: int = 64, log: Callable[[str], None] | None = None) -> torch.Tensor:
    """[n,3,32,32] samples of the text base of ``models`` with ``steps`` DDIM steps (one of them
    per batch; guidance 3), from random captions of ``records``: what poor samplers (the
    committed text base with 2-3 steps) or early-training models (an early text base at 25
    steps) draw."""
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
    ``python -m core train judge --early``); ``balance`` the exponent of the per-design
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
    def from_dict(cls, d: dict) -> JudgeSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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
                early: torch.Tensor | None = None, log: Callable[[str], None] | None = print,
                state_path: str | Path | None = None, budget: Budget | None = None,
                save_every: int = 250) -> Judge | None:
    """Train a judge on the real emoji (all, or the training split for the twin); ``bank`` is
    the poor samples and ``early`` the early-training samples among the negatives (None or
    empty: none of that kind). With ``state_path``, resume from it and save to it; None when
    ``budget`` ended the run first."""
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
    model.train()
    b = settings.batch

    def step_loss(step: int):   # one batch of positives and negatives
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
        return loss, {"realism": l_real, "subgroup": l_sub, "design": l_des}

    def report(step: int, running: dict[str, float]) -> None:
        losses = ", ".join(f"{k} {v:.3f}" for k, v in running.items())
        log(f"  judge: step {step}/{settings.steps} losses {losses} ({time.perf_counter() - t0:.0f} s)")

    fit(model, step_loss, settings.steps, settings.lr, weight_decay=settings.weight_decay,
        warmup=settings.warmup, report=report, state_path=state_path, generators={"batches": gen},
        save_every=save_every, stop=budget, log=log)
    if budget is not None and budget.stopped:
        return None
    model.eval()
    judge = Judge(model, subgroups, {})
    judge.set_reference(data if settings.include_heldout and settings.max_train is None else DataSubset(data, idx))
    thresholds = calibrate(judge, data, idx, settings.seed + 11)
    info = {
        "format_version": FORMAT_VERSION, "resolution": RESOLUTION, "width": settings.width,
        "threshold": round(thresholds["threshold"], 4),
        "manifold_threshold": round(thresholds["manifold_threshold"], 4),
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


class DataSubset:
    """A view of a data set restricted to some records (the twin's retrieval reference)."""

    def __init__(self, data, indices):
        self._data, self._idx = data, torch.as_tensor(indices, dtype=torch.long)
        self.records = [data.records[i] for i in self._idx.tolist()]

    def images_at(self, resolution, indices=None):
        idx = self._idx if indices is None else self._idx[torch.as_tensor(indices, dtype=torch.long)]
        return self._data.images_at(resolution, idx)


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
         "generated images (`core/evaluation/judge.py`). Trained by `python -m core train judge` on all "
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


__all__ = ["JudgeSettings", "DataSubset", "train_judge", "training_indices", "calibrate", "measure", "model_card",
           "poor_samples", "MANIFOLD_QUANTILE"]


# --------------------------------------------------------------------------- the task


def run_judge(settings: JudgeSettings, out: str | Path, checkpoints=None, early_root=None, twin: bool = False,
              exclude_heldout: bool = False, run: Path | None = None, budget: Budget | None = None,
              data=None, log: Callable[[str], None] = print) -> dict:
    """Make the negatives (poor samples of the text base of ``checkpoints``, early samples of the
    text base of ``early_root``), train the judge on all emoji (and, with ``twin`` or
    ``exclude_heldout``, a twin on the training split measured on the held-out split), measure it
    and write ``out`` (config, weights, card). With ``run``, each training resumes from and saves
    ``run/state.pt`` (the twin ``run/twin/state.pt``). Returns a summary."""
    data = data if data is not None else load_dataset()
    budget = budget or Budget()
    if settings.early and not early_root:
        raise ValueError("--early-n needs --early: the checkpoints root of an early-training text base")
    heldout = data.indices("heldout").tolist()
    train_records = [data.records[i] for i in data.indices("train").tolist()]
    bank = eval_poor = early_bank = early_eval = None
    if settings.poor:
        # captions of the training split for the banks (the twin never sees a held-out caption), of the
        # held-out split (other seeds) for measuring
        models = ModelSet(checkpoints, "cpu")
        log(f"poor samples: {settings.poor} for training, 256 for measuring (text base, 2-3 DDIM steps)")
        bank = poor_samples(models, train_records, settings.poor, settings.seed)
        eval_poor = poor_samples(models, [data.records[i] for i in heldout], 256, settings.seed + 1)
    if settings.early:
        early = ModelSet(early_root, "cpu")
        log(f"early samples: {settings.early} for training, 64 for measuring (text base of {early_root}, 25 steps)")
        early_bank = poor_samples(early, train_records, settings.early, settings.seed + 2, steps=(25,), log=log)
        early_eval = poor_samples(early, [data.records[i] for i in heldout], 64, settings.seed + 3, steps=(25,))
    stopped = {"stopped_by_budget": True, "export": None}
    twin_figures = None
    if exclude_heldout or twin:
        log("twin (training split only), to measure on the held-out split:")
        twin_settings = replace(settings, include_heldout=False)
        twin_run = run / "twin" if run is not None else None
        claim_run(twin_run, asdict(twin_settings))
        t = train_judge(data, twin_settings, bank, early_bank, log,
                        state_path=twin_run / "state.pt" if twin_run else None, budget=budget)
        if t is None:
            return stopped
        t.set_reference(DataSubset(data, data.indices("train")))
        twin_figures = measure(t, data, heldout, eval_poor, early=early_eval)
        log(f"twin on the held-out split: {json.dumps(twin_figures)}")
        if exclude_heldout:
            t.info["measured"] = {"heldout_twin": twin_figures}
            t.save(out, model_card(t, twin_figures, twin_figures))
            log(f"wrote {out}")
            return {"stopped_by_budget": False, "export": str(out), "heldout_twin": twin_figures}
    log("judge (all emoji):")
    claim_run(run, asdict(settings))
    judge = train_judge(data, settings, bank, early_bank, log,
                        state_path=run / "state.pt" if run is not None else None, budget=budget)
    if judge is None:
        return stopped
    own = measure(judge, data, range(len(data)), eval_poor, early=early_eval)
    log(f"judge on all emoji: {json.dumps(own)}")
    judge.info["measured"] = {"all": own, **({"heldout_twin": twin_figures} if twin_figures else {})}
    judge.save(out, model_card(judge, twin_figures, own))
    log(f"wrote {out}")
    return {"stopped_by_budget": False, "export": str(out), "all": own}


class JudgeTask(FitTask):
    """`python -m core train judge`: the judge (`core.evaluation.judge`), written to --export
    (default checkpoints/judge)."""
    name = "judge"
    settings = JudgeSettings
    options = frozenset({"poor", "early", "early_n", "twin", "exclude_heldout", "checkpoints"})
    smoke = {"steps": 4, "batch": 4, "width": 4, "max_train": 16, "warmup": 2, "poor": 0}

    def run(self, settings, run, export, options, budget, log):
        return run_judge(settings, export or DEFAULT_FOLDER, options.get("checkpoints"), options.get("early"),
                         bool(options.get("twin")), bool(options.get("exclude_heldout")), run, budget, log=log)
