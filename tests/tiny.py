"""Tiny seeded models for tests (no training, no data): the shapes of the real ones."""
from __future__ import annotations

import torch

from core.models.networks import DiffusionModel, ModelConfig, image_unet_config, text_unet_config, unet_backbone

CHANNELS = (8, 16)
CLASSES = ["cat-face", "hand-fingers-open", "person-activity"]


def tiny_model(kind: str, seed: int = 0, resolution: int | None = None, low_resolution: int | None = None,
               width: int = 16, residual_scale: float | None = None) -> DiffusionModel:
    torch.manual_seed(seed)
    if kind == "text_base":
        res = resolution or 32
        unet = text_unet_config(res, CHANNELS, cross_attention_dim=width, head_dim=8)
        cfg = ModelConfig(kind="text_base", resolution=res, backbone=unet_backbone(unet, cross_attention=True),
                          conditioner={"type": "text_tokens", "text_encoder": "clip"})
    elif kind == "class_base":
        res = resolution or 32
        unet = image_unet_config(res, CHANNELS, num_class_embeds=len(CLASSES) + 1, head_dim=8)
        cfg = ModelConfig(kind="class_base", resolution=res, backbone=unet_backbone(unet),
                          conditioner={"type": "label_embedding", "classes": list(CLASSES)})
    elif kind == "palette":
        from core.models.networks import palette_unet_config
        res = resolution or 64
        unet = palette_unet_config(res, CHANNELS, head_dim=8)
        cfg = ModelConfig(kind="palette", resolution=res, backbone=unet_backbone(unet),
                          conditioner={"type": "source_mask_concat", "tasks": ["colorize", "inpaint"]},
                          residual_scale=residual_scale)
    else:
        res = resolution or 64
        unet = image_unet_config(res, CHANNELS, in_channels=6, attention_levels=0, class_embed_type="timestep")
        cfg = ModelConfig(kind="sr", resolution=res, backbone=unet_backbone(unet),
                          conditioner={"type": "low_res_concat", "low_resolution": low_resolution or res // 2},
                          residual_scale=residual_scale)
    model = DiffusionModel(cfg).eval().requires_grad_(False)
    # A freshly initialised diffusers UNet zeroes its output conv, so every output would be
    # identical; random weights there make the tests able to tell inputs apart.
    with torch.no_grad():
        for p in model.net.conv_out.parameters():
            p.normal_(0, 0.05)
    return model


TINY_CAPTIONS = ["woman dancing, dark skin tone", "man dancing, light skin tone", "thumbs up", "red apple",
                 "grinning face", "cat face", "an emoji of a woman dancing"]


def tiny_clip(seed: int = 0):
    """A tiny untrained CLIP (config, model) with a vocabulary from a few captions."""
    from core.models.clip_model import ClipConfig, build_clip, build_vocab
    torch.manual_seed(seed)
    config = ClipConfig.tiny(vocab=build_vocab(TINY_CAPTIONS))
    return config, build_clip(config).eval()


def tiny_diffae(seed: int = 0, resolution: int = 32, semantic_dim: int = 16) -> DiffusionModel:
    """A tiny untrained DiffAE (semantic encoder + z_sem-conditioned UNet), random output conv."""
    from core.models.networks import diffae_unet_config
    torch.manual_seed(seed)
    unet = diffae_unet_config(resolution, CHANNELS, head_dim=8)
    cfg = ModelConfig(kind="diffae", resolution=resolution, backbone=unet_backbone(unet),
                      conditioner={"type": "semantic_code", "semantic_dim": semantic_dim,
                                   "encoder_channels": list(CHANNELS)})
    model = DiffusionModel(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.net.conv_out.parameters():
            p.normal_(0, 0.05)
    return model


def _from_decoder(decoder: DiffusionModel, config: ModelConfig, seed: int) -> DiffusionModel:
    """A base of `config` made from `decoder` as training makes it: the decoder's UNet and z_proj
    copied, its own layers random, random code statistics."""
    torch.manual_seed(seed)
    model = DiffusionModel(config)
    model.net.load_state_dict(decoder.net.state_dict())
    model.conditioner.z_proj.load_state_dict(decoder.conditioner.z_proj.state_dict())
    with torch.no_grad():
        model.conditioner.code_mean.normal_(0, 0.5)
        model.conditioner.code_std.uniform_(0.5, 1.5)
    return model.eval().requires_grad_(False)


def tiny_pooled_text_base(decoder: DiffusionModel, pooled_dim: int = 16, seed: int = 0) -> DiffusionModel:
    """A tiny pooled text base (a ``pooled_text_code`` conditioner) made from `decoder`, a random text_mlp."""
    d = decoder.config
    conditioner = {"type": "pooled_text_code", "text_encoder": "clip", "pooled_dim": pooled_dim, "text_hidden": 24,
                   "semantic_dim": d.semantic_dim}
    return _from_decoder(decoder, ModelConfig(kind="text_base", resolution=d.resolution, backbone=d.backbone,
                                              conditioner=conditioner), seed)


def tiny_code_class_base(decoder: DiffusionModel, seed: int = 0, classes=CLASSES, modes: int = 0) -> DiffusionModel:
    """A tiny code class base (a ``label_code`` conditioner) made from `decoder`, a random label_code;
    with `modes` > 0 a mixture whose centres are random codes, owned by the labels in turn."""
    d = decoder.config
    conditioner = {"type": "label_code", "classes": list(classes), "code_hidden": 24, "code_modes": modes or None,
                   "semantic_dim": d.semantic_dim}
    model = _from_decoder(decoder, ModelConfig(kind="class_base", resolution=d.resolution, backbone=d.backbone,
                                               conditioner=conditioner), seed)
    if modes:
        model.conditioner.label_code.mode_codes.normal_()
        model.conditioner.label_code.mode_labels.copy_(torch.arange(modes) % len(classes))
    return model


def decoder_inputs(seed: int = 0, b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t [b, 3, 32, 32], t [b]) for comparing a decoder-made base with its decoder."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 32, 32, generator=g), torch.tensor([50.0, 400.0, 900.0][:b])


def write_tiny_checkpoints_with(root, name: str, make) -> None:
    """`write_tiny_checkpoints(root)` with the model `name` replaced by make(their DiffAE)."""
    from pathlib import Path

    from core.models.checkpoints import save_model
    from core.models.loading import load_model
    root = Path(root)
    write_tiny_checkpoints(root)
    save_model(make(load_model(root / "diffae")), root / name, f"# tiny {name} made from the DiffAE\n")


def tiny_directions(model: DiffusionModel, seed: int = 0):
    """Directions for `tiny_diffae` fitted on random codes with planted labels: dark-skin,
    woman, smiling (no data needed)."""
    from core.diffae import fit_from_codes
    g = torch.Generator().manual_seed(seed)
    d = model.config.semantic_dim
    z = torch.randn(200, d, generator=g) * 0.5 + 0.1
    labels = {name: (torch.arange(200), (z[:, k] > 0.1).long()) for k, name in
              enumerate(("dark-skin", "woman", "smiling"))}
    return fit_from_codes(z, labels, iterations=100)


def tiny_prior(seed: int = 0, dim: int = 16, text_dim: int = 16, classes=CLASSES):
    """A tiny untrained semantic prior over `tiny_diffae`'s codes, random output layer and gates."""
    from core.models.prior import PriorConfig, SemanticPrior
    torch.manual_seed(seed)
    model = SemanticPrior(PriorConfig(dim=dim, text_dim=text_dim, classes=list(classes), width=32, depth=2))
    with torch.no_grad():   # adaLN-Zero starts every block as the identity: perturb it
        for block in model.blocks:
            block.modulation[1].weight.normal_(0, 0.05)
    return model.eval().requires_grad_(False)


def tiny_noisy_classifier(seed: int = 0, classes=CLASSES):
    """A tiny untrained noise-aware classifier over `classes` (those of the tiny class base)."""
    from core.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
    torch.manual_seed(seed)
    return NoisyClassifier(NoisyClassifierConfig(classes=list(classes), channels=(8, 16))).eval().requires_grad_(False)


def tiny_code_guide(kind: str, seed: int = 0, dim: int = 16, text_dim: int = 16, classes=CLASSES):
    """A tiny untrained code classifier or code-text matcher (core.models.code_guidance) over the
    tiny prior's codes, its blocks perturbed from the identity."""
    from core.models.code_guidance import CodeClassifier, CodeGuideConfig, CodeMatcher
    torch.manual_seed(seed)
    config = CodeGuideConfig(kind=kind, dim=dim, classes=list(classes) if kind == "code_classifier" else [],
                             text_dim=text_dim, embed_dim=8, width=16, depth=1)
    model = (CodeClassifier if kind == "code_classifier" else CodeMatcher)(config)
    with torch.no_grad():
        for block in model.trunk.blocks:
            block.modulation[1].weight.normal_(0, 0.05)
    return model.eval().requires_grad_(False)


def write_tiny_checkpoints(root) -> None:
    """A complete checkpoints folder of tiny random models, as the app and CLI expect it:
    clip, text_base, class_base, sr64 (32->64, diffusing the image), sr128 (64->128, diffusing the
    residual over the upsampled input), palette (diffusing the residual over its task's baseline),
    diffae (+ directions), prior (over the diffae's codes), noisy_classifier (for classifier guidance
    of the class base), code_classifier and code_matcher (classifier and CLIP guidance of the prior)."""
    from pathlib import Path

    from core.models.checkpoints import save_model
    from core.models.clip_model import save_clip_folder
    root = Path(root)
    config, clip = tiny_clip()
    save_clip_folder(root / "clip", clip, config, extra_config={"kind": "clip"})
    save_model(tiny_model("text_base", width=config.text.width), root / "text_base", "# tiny text base\n")
    save_model(tiny_model("class_base"), root / "class_base", "# tiny class base\n")
    save_model(tiny_model("sr", resolution=64, low_resolution=32), root / "sr64", "# tiny sr64\n")
    save_model(tiny_model("sr", resolution=128, low_resolution=64, residual_scale=4.0), root / "sr128",
               "# tiny sr128\n")
    save_model(tiny_model("palette", residual_scale=2.0), root / "palette", "# tiny palette\n")
    diffae = tiny_diffae()
    save_model(diffae, root / "diffae", "# tiny diffae\n")
    tiny_directions(diffae).save(root / "diffae")
    from core.translate import CODE_BOOK_FILE, CodeBook
    images = torch.rand(12, 3, diffae.resolution, diffae.resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    CodeBook.build(diffae, images).save(root / "palette" / CODE_BOOK_FILE)   # the colorization code book
    from core.models.checkpoints import save_folder
    prior = tiny_prior(dim=diffae.config.semantic_dim, text_dim=config.embed_dim)
    save_folder(root / "prior", prior.config.to_dict(), prior.state_dict(), "# tiny prior\n")
    save_model(tiny_noisy_classifier(), root / "noisy_classifier", "# tiny noisy classifier\n")
    for kind in ("code_classifier", "code_matcher"):
        save_model(tiny_code_guide(kind, dim=diffae.config.semantic_dim, text_dim=config.embed_dim), root / kind,
                   f"# tiny {kind}\n")
