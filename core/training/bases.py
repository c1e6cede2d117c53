"""The 32 px pixel bases: the class-conditional UNet (`class_base`) and the text-conditioned one
(`text_base`). Both drop their condition 10% of the time (the null label, the empty prompt), so
one network gives both halves of classifier-free guidance.

The text base comes in two conditionings (`--text-conditioning`, `core.models.networks`):
- ``tokens``: a UNet trained from scratch, cross-attention over the project CLIP's token states.
- ``pooled``: transfer from the committed DiffAE. Its decoder already draws almost every training
  emoji from the emoji's semantic code z_sem; what a text base lacks is the code. So the network
  is the decoder (its UNet and z_proj copied), fed code = text_mlp(pooled CLIP embedding),
  de-normalised with the training codes' mean and std. A fresh run first fits text_mlp by
  regression, caption -> the normalised code of its emoji (`warm_start`, a few minutes on one
  CPU thread), then the whole network is fine-tuned with the usual diffusion loss, so it learns
  p(image | text) itself, the empty prompt included (classifier-free guidance).

The class base likewise (`--label-conditioning`):
- ``embedding``: a UNet with a label embedding, trained from scratch.
- ``code``: transfer from the committed DiffAE and the committed semantic prior. A label stands
  for many emoji, so no single code draws it (decoding the mean code of a subgroup gives a blob);
  the code is drawn: code = label_code(label, noise), a one-step generator. A fresh run fits it to
  the prior's own sampler (`warm_start`): for every label and the null label, DISTILL_NOISES
  starting noises are taken to codes by the prior's deterministic DDIM sampler at its default
  guidance, and label_code learns (label, noise) -> that code (knowledge distillation of a
  sampler into one step, Luhman & Luhman 2021). The prior's codes of a label lie close to its
  training emoji's codes, and the map jumps from one emoji to the next; a regression averages
  across the jumps and the decoder draws blends. So label_code is a mixture (CODE_MIXTURE): one
  centre per training emoji, owned by its label and placed at the mean of the prior's codes
  nearest it (`fit_modes`); it learns which centre the prior reaches from each noise (a
  classification) and the rest as a residual (`fit_mixture`). The fine-tuning (any steps after
  the warm start) then gives each training emoji the noise whose distilled code lies nearest its
  own code, and trains the whole network with the diffusion loss on (label, that noise) -> the
  emoji.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from core.data.emoji import captions_for, design_weights, random_caption
from core.diffae import semantic_code
from core.images import save_grid
from core.models.checkpoints import CheckpointError
from core.models.loading import load_model
from core.models.networks import DiffusionModel, ModelConfig, image_unet_config, text_unet_config, unet_backbone
from core.models.prior import denoise_codes, prior_sampling
from core.models.text_encoders import ClipTextEncoder
from core.optim import fit
from core.pipeline import generate_class, generate_text
from core.training.config import ClassBaseSettings, PixelBaseSettings, TextBaseSettings
from core.training.task import DiffusionTask

GRID_PROMPTS = ["woman dancing, dark skin tone", "man dancing, light skin tone", "thumbs up", "red apple",
                "grinning face", "cat face", "a blue car", "keycap: 7", "person raising hand, medium skin tone",
                "woman with headscarf", "fire", "globe showing americas"]
# balance 0.5: People & Body is ~60% of the emoji but mostly tone and gender variants of a few
# hundred designs; weight (design size) ** -0.5 gives the other ~1,200 designs ~2x the draws
BASE_DEFAULTS = dict(channels=(32, 64, 128), balance=0.5)
TEXT_HIDDEN = 768            # pooled: hidden width of text_mlp
# pooled warm start: AdamW steps of the caption -> code regression, the learning rate on a cosine
# to 0. Decoding the predicted codes of 128 names of training emoji outside People & Body
# (`--focus-n`'s split): 3,000 steps leave a mean squared error of 0.035 on those names and
# 0.52 of them recognisable; 10,000 steps 0.011 and 0.59 (real renders 0.71).
REGRESSION_STEPS = 10_000
REGRESSION_BATCH, REGRESSION_LR = 256, 1e-3
# The pooled base's default guidance (its config's `guidance`). The decoder is conditioned so
# strongly by its code that guidance above 1 saturates and simplifies the emoji: on 64 names of
# training emoji outside People & Body, recognisable 0.59 / 0.53 / 0.38 at guidance 1 / 1.5 / 2
# after 500 fine-tuning steps (/ 0.13 at 3 after 250); see checkpoints/text_base/README.md.
POOLED_GUIDANCE = 1.0
# code class base: starting noises per label (and for the null label) taken through the prior's
# sampler, and the regression that distills that sampler into label_code (AdamW, cosine to 0)
# A first run with 512 noises per label and hidden width 768 fitted its 51,200 codes (MSE 0.014)
# but not fresh noises (0.45, against 0.58 for the label's mean code): the map from noise to
# code is sharp between emoji, so it needs many noises per label.
# With 4,096 noises per label, width 1,024: 0.26 on fresh noises; with 8,192: 0.23. Recognisable
# (64 labels per split): 0.41 / 0.55 / 0.53 on People & Body subgroups and 0.20 / 0.30 / 0.30 on
# the others for the three (real renders 0.83 and 0.59; checkpoints/class_base/README.md).
CODE_HIDDEN = 1024
DISTILL_NOISES, DISTILL_CHUNK = 8192, 4096   # noises per label, drawn in chunks of a generator each
DISTILL_STEPS, DISTILL_BATCH = 8_000, 1024
CODE_MIXTURE = True   # label_code as a mixture of one centre per training emoji (`LabelCodeNet`)
CODE_GUIDANCE = 1.0   # the code class base's default guidance: the prior's guidance is distilled into its codes


def decoder_transfer(task, kind: str, conditioner: dict, guidance: float) -> tuple[DiffusionModel, torch.Tensor]:
    """A base that starts as the committed 32 px DiffAE decoder: a DiffusionModel of `kind` with
    `conditioner` (one that ends in a semantic code: its semantic_dim is the decoder's), sampled at
    `guidance`, with the decoder's UNet, z_proj, schedule and parameterisation, and its code_mean / code_std set
    from the training emoji's codes; returns it and those codes [N_train, semantic_dim]."""
    folder = Path(task.cfg.run.checkpoints) / "diffae"
    decoder = load_model(folder)
    if decoder.kind != "diffae" or decoder.resolution != 32:
        raise CheckpointError(f"{folder} holds a {decoder.kind!r} model at {decoder.resolution} px; "
                              f"the {task.name} starts from a 32 px DiffAE")
    d = decoder.config
    model = DiffusionModel(ModelConfig(kind=kind, resolution=32, backbone=d.backbone, prediction=d.prediction,
                                       schedule=d.schedule, conditioner={**conditioner, "semantic_dim": d.semantic_dim},
                                       sampling={"guidance": guidance}))
    model.net.load_state_dict(decoder.net.state_dict())
    model.conditioner.z_proj.load_state_dict(decoder.conditioner.z_proj.state_dict())
    codes = semantic_code(decoder, task.images[task.train_idx])
    model.conditioner.code_mean.copy_(codes.mean(0))
    model.conditioner.code_std.copy_(codes.std(0))
    return model, codes


def minimise(net, losses, n: int, device, steps: int, seed: int, batch: int) -> tuple[float, ...]:
    """Minimise the sum of losses(b), a tuple of scalar losses on the examples at indices b, over
    random batches of `batch` of the n examples (AdamW, lr on a cosine to 0); the last batch's
    losses."""
    gen = torch.Generator().manual_seed(seed)

    def step_loss(step: int):
        terms = losses(torch.randint(n, (batch,), generator=gen).to(device))
        return sum(terms), {str(i): t for i, t in enumerate(terms)}

    last = fit(net.parameters(), step_loss, steps, REGRESSION_LR, weight_decay=0.01)   # AdamW's default decay
    return tuple(last.values())


def fit_regression(net, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, steps: int, seed: int,
                   batch: int = REGRESSION_BATCH) -> float:
    """Fit net(*inputs[b]) to target[b] by MSE on random batches (`minimise`); the last batch's loss."""
    def losses(b):
        return ((net(*(x[b] for x in inputs)) - target[b]).pow(2).mean(),)
    return minimise(net, losses, len(target), target.device, steps, seed, batch)[0]


def fit_mixture(net, labels: torch.Tensor, noise: torch.Tensor, choice: torch.Tensor, residual: torch.Tensor,
                steps: int, seed: int, batch: int) -> tuple[float, float]:
    """Fit a mixture `LabelCodeNet`: cross-entropy of its choice against `choice` (the centre each
    code lies nearest) plus the MSE of its residual against `residual` (the code minus that
    centre), on random batches (`minimise`); the last batch's two losses."""
    def losses(b):
        predicted, logits = net.mixture(labels[b], noise[b])
        return torch.nn.functional.cross_entropy(logits, choice[b]), (predicted - residual[b]).pow(2).mean()
    return minimise(net, losses, len(choice), choice.device, steps, seed, batch)


class PixelBaseTask(DiffusionTask):
    """What the two 32 px bases share: their recipe and the design balance of their draws."""
    settings = PixelBaseSettings
    defaults = BASE_DEFAULTS

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.task.balance:   # emoji drawn with weight (design size) ** -balance
            self.weights = design_weights([self.data.records[i] for i in self.train_idx.tolist()], cfg.task.balance)


class ClassBaseTask(PixelBaseTask):
    name, folder = "class_base", "class_base"
    settings = ClassBaseSettings
    gpu_profile = dict(batch=512, lr=1e-3, warmup=500, budget_minutes=1.25)

    def build(self):
        classes = self.data.classes
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        self.labels = torch.as_tensor(self.data.labels)
        self.code_noise = None   # code: each training emoji's noise for the fine-tuning (`warm_start`)
        if self.cfg.task.label_conditioning == "code":
            conditioner = {"type": "label_code", "classes": list(classes), "code_hidden": CODE_HIDDEN,
                           "code_modes": len(self.train_idx) if CODE_MIXTURE else None}
            model, self.codes = decoder_transfer(self, "class_base", conditioner, CODE_GUIDANCE)
        else:
            unet = image_unet_config(32, self.cfg.task.channels, num_class_embeds=len(classes) + 1, attention_levels=1)
            model = DiffusionModel(ModelConfig(kind="class_base", resolution=32, backbone=unet_backbone(unet),
                                               conditioner={"type": "label_embedding", "classes": list(classes)}))
        self.schedule = model.schedule
        return model

    def warm_start(self, model, log):
        """Code: distill the committed prior's sampler into label_code, then pair each training
        emoji with a noise (`pair_noises`)."""
        if self.cfg.task.label_conditioning != "code":
            return
        labels, noise, target = self.distillation_set(model)
        steps = 20 if self.cfg.run.smoke else DISTILL_STEPS
        if model.config.conditioner.get("code_modes"):
            choice = self.fit_modes(model, labels, target)
            residual = target - model.conditioner.label_code.mode_codes[choice]
            ce, mse = fit_mixture(model.conditioner.label_code, labels, noise, choice, residual, steps,
                                  self.cfg.run.seed,
                                  DISTILL_BATCH)
            last = f"cross-entropy {ce:.3f}, residual MSE {mse:.3f}"
        else:
            mse = fit_regression(model.conditioner.label_code, (labels, noise), target, steps, self.cfg.run.seed,
                                 DISTILL_BATCH)
            last = f"MSE {mse:.3f}"
        log(f"class_base: label_code distilled from the prior's sampler on {len(target)} codes of "
            f"{len(model.config.classes) + 1} labels ({steps} steps; last batch {last})")
        self.pair_noises(model, labels, noise)

    @torch.no_grad()
    def fit_modes(self, model, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Set the mixture's centres, one per training emoji and owned by its label: the mean of
        the distilled codes of that label that lie nearest the emoji's own normalised code (the
        code itself where none does; one step of Lloyd's k-means started at the emoji's codes).
        Returns the centre each distilled code lies nearest, among its label's (the null label's:
        among all)."""
        net, device = model.conditioner.label_code, target.device
        codes = model.conditioner.normalise(self.codes.to(device)).to(target.dtype)
        owners = self.labels[self.train_idx].to(device)
        choice = torch.empty(len(target), dtype=torch.long, device=device)
        for label in range(model.num_classes + 1):
            rows = (labels == label).nonzero().squeeze(1)
            mine = torch.ones_like(owners, dtype=torch.bool) if label == net.null else owners == label
            modes = mine.nonzero().squeeze(1)
            if len(rows) and not len(modes):
                raise ValueError(f"label {model.config.classes[label]!r} has no training emoji to centre its codes on")
            for part in rows.split(4096):
                choice[part] = modes[torch.cdist(target[part], codes[modes]).argmin(1)]
        drawn = labels != net.null
        counts = torch.bincount(choice[drawn], minlength=len(codes))
        sums = torch.zeros_like(codes).index_add_(0, choice[drawn], target[drawn])
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], codes)
        net.mode_codes.copy_(centres)
        net.mode_labels.copy_(owners)
        return choice

    @torch.no_grad()
    def distillation_set(self, model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(labels, noise, target): DISTILL_NOISES starting noises per label, the null label
        included, and the normalised codes (in the class base's normalisation) that the committed
        prior's DDIM sampler reaches from them at its default guidance (the null label: no guidance).
        Kept in the run folder (`distillation_set.pt`), so a resumed run pairs without the prior."""
        device = model.conditioner.code_mean.device
        cache = Path(self.cfg.run.folder) / "distillation_set.pt"
        if cache.is_file():
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            return saved["labels"].to(device), saved["noise"].to(device), saved["target"].to(device)
        labels, noise, target = self._distill_targets(model)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"labels": labels.cpu(), "noise": noise.cpu(), "target": target.cpu()}, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").replace(cache)
        return labels, noise, target

    def _distill_targets(self, model, indices: list[int] | None = None,
                         chunks: list[int] | None = None) -> tuple[torch.Tensor, ...]:
        """The distillation set of the labels at `indices` (default all, the null label
        `num_classes` last) and the chunks of noises at `chunks` (default all); each chunk of each
        label's noises comes from a generator of its own, so the set can be made in parts."""
        folder = Path(self.cfg.run.checkpoints) / "prior"
        device = model.conditioner.code_mean.device
        prior = load_model(folder, device=device)
        classes = model.config.classes
        if prior.kind != "prior":
            raise CheckpointError(f"{folder} holds a {prior.kind!r} model, not the semantic prior")
        missing = sorted(set(classes) - set(prior.config.classes))
        if missing:
            raise CheckpointError(f"the semantic prior in {folder} lacks labels of this data set: {missing[:3]}")
        n = 4 if self.cfg.run.smoke else min(DISTILL_NOISES, DISTILL_CHUNK)
        steps = 2 if self.cfg.run.smoke else prior_sampling(prior, "steps")
        names = [*classes, None]
        labels, noises, targets = [], [], []
        every_chunk = range(1 if self.cfg.run.smoke else max(1, DISTILL_NOISES // DISTILL_CHUNK))
        for chunk, index in itertools.product(every_chunk if chunks is None else chunks,
                                              range(len(names)) if indices is None else indices):
            name = names[index]
            gen = torch.Generator().manual_seed(self.cfg.run.seed * 1000 + index + 1 + 100_000 * chunk)
            noise = torch.randn(n, prior.config.dim, generator=gen).to(device)
            cond = prior.null_cond(n) if name is None else prior.label_cond([name] * n)
            guidance = 1.0 if name is None else prior_sampling(prior, "guidance")
            zn = denoise_codes(prior, cond, prior.null_cond(n), noise, guidance, steps)   # the prior's sampler
            labels.append(torch.full((n,), index, dtype=torch.long, device=device))
            noises.append(noise)
            targets.append(model.conditioner.normalise(prior.denormalise(zn)))
        return torch.cat(labels), torch.cat(noises), torch.cat(targets)

    @torch.no_grad()
    def pair_noises(self, model, labels: torch.Tensor, noise: torch.Tensor) -> None:
        """Give each training emoji (and, for the dropped labels, the null label) the noise whose
        drawn code lies nearest its own normalised code among its label's noises: the fine-tuning's
        condition for that emoji (after the warm start, and afresh on a resumed run)."""
        device = model.conditioner.code_mean.device
        codes = model.conditioner.normalise(self.codes.to(device))
        # in parts: a mixture scores every centre
        drawn = torch.cat([model.conditioner.label_code(labels[part], noise[part])
                           for part in torch.arange(len(labels), device=device).split(16384)])
        null = model.num_classes
        rows_of = {label: (labels == label).nonzero().squeeze(1) for label in range(null + 1)}
        self.code_noise = torch.zeros(len(self.data.records), 2, noise.shape[1])  # [emoji, (label, null)]
        for j, i in enumerate(self.train_idx.tolist()):
            for slot, label in enumerate((int(self.labels[i]), null)):
                rows = rows_of[label]
                nearest = rows[(drawn[rows] - codes[j]).pow(2).sum(1).argmin()]
                self.code_noise[i, slot] = noise[nearest].cpu()

    def loss(self, model, gen, device):
        if self.cfg.task.label_conditioning == "code" and self.code_noise is None:   # resumed: pair afresh
            network = getattr(model, "module", model)
            labels, noise, _ = self.distillation_set(network)
            self.pair_noises(network, labels, noise)
        return super().loss(model, gen, device)

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.optim.batch)
        labels = self.labels[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < self.cfg.task.cond_dropout
        labels[drop] = len(self.data.classes)  # the null label
        cond = {"labels": labels.to(device)}
        if self.cfg.task.label_conditioning == "code":
            cond["code_noise"] = self.code_noise[idx, drop.long()].to(device)
        return self.images[idx].to(device), cond

    def sample_grid(self, model, path, device):
        names = [self.data.records[i].subgroup for i in self.draw(torch.Generator().manual_seed(1), 8)]
        images = generate_class(model, names, seeds=list(range(len(names))))
        save_grid(images, path, columns=8)


class TextBaseTask(PixelBaseTask):
    name, folder = "text_base", "text_base"
    settings = TextBaseSettings
    gpu_profile = dict(batch=512, lr=1e-3, warmup=500, budget_minutes=2.25)

    def build(self):
        clip_folder = Path(self.cfg.run.checkpoints) / "clip"
        self.encoder = ClipTextEncoder.from_folder(clip_folder)
        self.images = self.data.images_at(32, torch.arange(len(self.data.records)))
        if self.cfg.task.text_conditioning == "pooled":
            conditioner = {"type": "pooled_text_code", "text_encoder": "clip", "pooled_dim": self.encoder.pooled_width,
                           "text_hidden": TEXT_HIDDEN}
            model, self.codes = decoder_transfer(self, "text_base", conditioner, POOLED_GUIDANCE)
        else:
            unet = text_unet_config(32, self.cfg.task.channels, cross_attention_dim=self.encoder.width,
                                    attention_levels=1)
            model = DiffusionModel(ModelConfig(kind="text_base", resolution=32, backbone=unet_backbone(unet, True),
                                               conditioner={"type": "text_tokens", "text_encoder": "clip"}))
        self.schedule = model.schedule
        return model

    def warm_start(self, model, log):
        """Pooled: fit text_mlp so that every caption of a training emoji predicts the emoji's
        normalised code (MSE, AdamW), before the fine-tuning starts."""
        if self.cfg.task.text_conditioning != "pooled":
            return
        captions, rows = [], []
        for j, i in enumerate(self.train_idx.tolist()):
            for caption in captions_for(self.data.records[i]):
                captions.append(caption)
                rows.append(j)
        device = model.conditioner.code_mean.device   # the network is on the training device already (a GPU too)
        self.encoder.to(device)
        pooled = torch.cat([self.encoder.encode(captions[s:s + 512]).pooled for s in range(0, len(captions), 512)])
        target = model.conditioner.normalise(self.codes.to(device))[torch.as_tensor(rows, device=device)]
        steps = 20 if self.cfg.run.smoke else REGRESSION_STEPS
        loss = fit_regression(model.conditioner.text_mlp, (pooled,), target, steps, self.cfg.run.seed)
        log(f"text_base: text_mlp fitted to {len(captions)} captions of {len(set(rows))} emoji "
            f"by regression ({steps} steps; last batch MSE {loss:.3f})")

    def x0_and_cond(self, gen, device):
        idx = self.draw(gen, self.cfg.optim.batch)
        drop = torch.rand(len(idx), generator=gen) < self.cfg.task.cond_dropout
        prompts = ["" if d else random_caption(self.data.records[i], gen) for i, d in zip(idx.tolist(), drop.tolist())]
        self.encoder.to(device)
        emb = self.encoder.encode(prompts)
        return self.images[idx].to(device), emb.as_cond()

    def sample_grid(self, model, path, device):
        prompts = GRID_PROMPTS
        images = generate_text(model, self.encoder, prompts, guidance=3.0, steps=25, seeds=list(range(len(prompts))))
        save_grid(images, path, columns=len(prompts) // 2)
