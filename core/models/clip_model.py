"""A small CLIP trained from scratch on the emoji captions, built from open_clip's own classes.

The model is a plain `open_clip.model.CLIP` (ViT image tower, causal text transformer) with a
*compact* text vocabulary. open_clip's BPE tokenizer (`SimpleTokenizer`) has 49,408 ids; a
49,408 x 256 token embedding alone is 25 MB in fp16, while the emoji captions use only a few
thousand of those ids. So the text tower's embedding table is indexed by compact ids:

    compact id 0            pad     (open_clip's `pad_id` 0: the value after the last real token)
    compact id 1            <unk>   (any BPE id not seen in the training captions)
    compact id 2 + i        vocab[i], where `vocab` is the sorted list of open_clip BPE ids that
                            occur in the training captions, followed by <start_of_text> (49406)
                            and <end_of_text> (49407), the two largest BPE ids.

Because `vocab` is sorted and ends with sot, eot, the end-of-text token has the largest compact
id, so open_clip's default text pooling (`pool_type='argmax'`: the features at the argmax of the
ids, i.e. at eot) keeps working unchanged; `eos_id` is set to the compact eot id as well.

Images: the rest of the project works with images in [-1, 1]. The CLIP image tower is fed
``((x + 1) / 2 - OPENAI_DATASET_MEAN) / OPENAI_DATASET_STD`` (open_clip's usual preprocessing
after ToTensor), see `normalize_images`; every function here that takes images takes them in
[-1, 1] and does this itself.

Vision tower: a ViT (width 192, 4 layers, 3 heads of 64, patch 8 -> 8x8 = 64 tokens at 64x64)
rather than open_clip's ModifiedResNet. On 2 CPU cores a training step at batch 64 costs about
the same (~1 s with the text tower), but the ViT has no BatchNorm: an image's embedding does
not depend on the other images of the batch (no batch-statistics shortcut for the contrastive
loss at small batch, no train/eval mismatch), which matters for a model that is also used to
score single generated images.

On-disk format (read by `load_clip_folder` / `ClipTextEncoder.from_folder`): a folder with
``config.json`` holding ``{"clip": ClipConfig.to_dict(), ...}`` (other keys are ignored) and
``model.safetensors`` holding ``model.state_dict()`` (any float dtype, fp16 recommended; tensors
are cast to float32 on load). With ``"text_only": true`` in the "clip" dict the file holds no
``visual.*`` tensors (enough for conditioning; `ClipEmbedder` refuses it).

Default size (vocab of the 18k emoji captions = 3,076 BPE ids): 1.88 M image-tower + 4.02 M
text-tower parameters = 5.90 M, 11.8 MB in fp16 (text only: 8.0 MB).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

# The tokenizers and the text encoding need no open_clip import: they live in core.models.clip_text.
from core.models.clip_text import (  # noqa: F401
    _FIRST_WORD_ID,
    CONFIG_NAME,
    PAD_ID,
    UNK_ID,
    WEIGHTS_NAME,
    CompactTokenizer,
    bpe_tokenizer,
    check_prompts,
    encode_text_tokens,
    read_clip_config,
)
from core.models.clip_text import check_vocab as _check_vocab


def _filter_fields(cls, d: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _default_vision() -> CLIPVisionCfg:
    return CLIPVisionCfg(layers=4, width=128, head_width=32, patch_size=8, image_size=64)


def _default_text() -> CLIPTextCfg:
    return CLIPTextCfg(context_length=32, width=192, heads=3, layers=3)


@dataclass
class ClipConfig:
    """Everything needed to rebuild the model: open_clip tower configs plus the compact vocab.

    `text.vocab_size`, `text.pad_id`, `text.eos_id`, `text.pool_type` and `vision.image_size`
    are derived (from `vocab` and `image_size`) in `__post_init__`; values given for them are
    overwritten.
    """
    vocab: list[int] = field(default_factory=list)
    embed_dim: int = 192
    image_size: int = 64
    vision: CLIPVisionCfg = field(default_factory=_default_vision)
    text: CLIPTextCfg = field(default_factory=_default_text)

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = CLIPVisionCfg(**_filter_fields(CLIPVisionCfg, self.vision))
        if isinstance(self.text, dict):
            self.text = CLIPTextCfg(**_filter_fields(CLIPTextCfg, self.text))
        self.vocab = [int(i) for i in self.vocab]
        _check_vocab(self.vocab)
        # replace (not mutate): the caller's CLIPVisionCfg / CLIPTextCfg objects stay untouched
        self.vision = dataclasses.replace(self.vision, image_size=int(self.image_size))
        self.text = dataclasses.replace(self.text, vocab_size=self.vocab_size, pad_id=PAD_ID,
                                        eos_id=self.eot_id, pool_type="argmax")

    @classmethod
    def tiny(cls, vocab: Sequence[int] = ()) -> ClipConfig:
        """A very small model for smoke runs and tests (about 67 k parameters plus 32 per vocab entry)."""
        return cls(vocab=list(vocab), embed_dim=32, image_size=64,
                   vision=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16),
                   text=CLIPTextCfg(context_length=32, width=32, heads=2, layers=2))

    @property
    def vocab_size(self) -> int:
        """Rows of the token embedding: pad, unk, then one per entry of `vocab`."""
        return len(self.vocab) + _FIRST_WORD_ID

    @property
    def eot_id(self) -> int:
        return self.vocab_size - 1

    @property
    def context_length(self) -> int:
        return self.text.context_length

    def to_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "vision": dataclasses.asdict(self.vision),
            "text": dataclasses.asdict(self.text),
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipConfig:
        if not isinstance(d, dict):
            raise ValueError(f"ClipConfig.from_dict expects a dict, got {type(d).__name__}")
        missing = [k for k in ("vocab",) if k not in d]
        if missing:
            raise ValueError(f"CLIP config is missing {missing}")
        return cls(**_filter_fields(cls, d))


def build_vocab(captions: Iterable[str]) -> list[int]:
    """Sorted open_clip BPE ids occurring in `captions`, then sot, eot (see module docstring)."""
    bpe = bpe_tokenizer()
    ids: set[int] = set()
    for c in captions:
        if not isinstance(c, str):
            raise ValueError(f"captions must be strings, got {type(c).__name__}")
        ids.update(bpe.encode(c))
    ids -= {bpe.sot_token_id, bpe.eot_token_id}
    return sorted(ids) + [bpe.sot_token_id, bpe.eot_token_id]


def build_clip(config: ClipConfig) -> CLIP:
    """A freshly initialised open_clip `CLIP` for `config` (GELU, fp32)."""
    if not config.vocab:
        raise ValueError("ClipConfig.vocab is empty: build it with build_vocab(captions)")
    return CLIP(embed_dim=config.embed_dim, vision_cfg=config.vision, text_cfg=config.text)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def normalize_images(images: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
    """[-1, 1] images [B,3,H,W] (or [3,H,W]) -> the CLIP tower's input.

    Resized (bilinear, antialiased) to image_size x image_size if given and different; one
    channel is repeated to three.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a tensor in [-1, 1], got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B,3,H,W] (or [B,1,H,W]), got {tuple(images.shape)}")
    images = images.float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False, antialias=True)
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, device=images.device).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


MAX_LOGIT_SCALE = 100.0


def clip_loss(model: CLIP, images: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (open_clip's `ClipLoss`) on a batch of ([-1,1] images, compact ids).

    Rows of `token_ids` that are identical (the same caption twice in a batch) count as
    positives of each other (soft targets), so duplicates do not push matching pairs apart;
    without duplicates this is exactly `open_clip.loss.ClipLoss`. The temperature is
    `model.logit_scale.exp()` capped at 100 (open_clip clamps it the same way).
    """
    if images.shape[0] != token_ids.shape[0]:
        raise ValueError(f"batch mismatch: {images.shape[0]} images, {token_ids.shape[0]} captions")
    image_size = model.visual.image_size[0] if hasattr(model.visual, "image_size") else None
    x = normalize_images(images, image_size)
    img = model.encode_image(x, normalize=True)
    txt = model.encode_text(token_ids, normalize=True)
    scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * img @ txt.T
    same = (token_ids[:, None, :] == token_ids[None, :, :]).all(dim=-1).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


# ----------------------------------------------------------------------------- folder I/O

def clip_state_dict_and_config(model: CLIP, config: ClipConfig, dtype: torch.dtype | None = torch.float16,
                               text_only: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict with float tensors cast to `dtype`, contiguous, on CPU; {"clip": config dict}).

    text_only drops the image tower (``visual.*``), about a third of the default model, for
    checkpoints that only condition a diffusion model; the config dict then says
    ``"text_only": true`` and loading gives a model without `visual`.
    """
    sd = {}
    for k, v in model.state_dict().items():
        if text_only and k.startswith("visual."):
            continue
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[k] = v.contiguous()
    cfg = config.to_dict()
    if text_only:
        cfg["text_only"] = True
    return sd, {"clip": cfg}


def save_clip_folder(folder: str | os.PathLike, model: CLIP, config: ClipConfig,
                     dtype: torch.dtype | None = torch.float16, extra_config: dict | None = None,
                     text_only: bool = False) -> None:
    """Write `config.json` ({**extra_config, "clip": ...}) and `model.safetensors` into `folder`
    (each written to a temporary name, then renamed)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    sd, cfg = clip_state_dict_and_config(model, config, dtype, text_only)
    cfg = {**(extra_config or {}), **cfg}
    tmp_w = os.path.join(folder, WEIGHTS_NAME + ".tmp")
    tmp_c = os.path.join(folder, CONFIG_NAME + ".tmp")
    save_file(sd, tmp_w, metadata={"format": "pt"})
    with open(tmp_c, "w") as f:
        json.dump(cfg, f, indent=1)
    os.replace(tmp_w, os.path.join(folder, WEIGHTS_NAME))
    os.replace(tmp_c, os.path.join(folder, CONFIG_NAME))


def load_clip_folder(folder: str | os.PathLike, device: str | torch.device = "cpu",
                     require_vision: bool = False) -> tuple[CLIP, ClipConfig]:
    """(model in eval mode, float32, on `device`; its config) from a folder written by
    `save_clip_folder`. A text-only file gives a model whose `visual` is None (a ValueError if
    `require_vision`)."""
    from safetensors.torch import load_file

    folder = os.fspath(folder)
    clip, w_path = read_clip_config(folder)
    text_only = bool(clip.get("text_only", False))
    if text_only and require_vision:
        raise ValueError(f"CLIP checkpoint {folder!r} holds only the text tower; image embeddings "
                         "need a checkpoint saved with text_only=False")
    try:
        config = ClipConfig.from_dict(clip)
    except (TypeError, ValueError) as e:
        raise ValueError(f"CLIP checkpoint {folder!r}: bad 'clip' config: {e}") from e
    model = build_clip(config)
    try:
        sd = load_file(w_path)
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"CLIP checkpoint {folder!r}: cannot read model.safetensors: {e}") from e
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"CLIP checkpoint {folder!r}: weights do not match config.json: {e}") from e
    if text_only:
        missing = [k for k in missing if not k.startswith("visual.")]
    if missing or unexpected:
        raise ValueError(f"CLIP checkpoint {folder!r}: weights do not match config.json: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if text_only:
        model.visual = None
    return model.to(device).eval(), config


# ----------------------------------------------------------------------------- evaluation

class ClipEmbedder:
    """CLIP image/text embeddings and CLIP score, for evaluating generated images."""

    def __init__(self, model: CLIP, tokenizer: CompactTokenizer):
        if getattr(model, "visual", None) is None:
            raise ValueError("ClipEmbedder needs a CLIP with its image tower (not a text-only checkpoint)")
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = int(model.visual.image_size[0])

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> ClipEmbedder:
        model, config = load_clip_folder(folder, device, require_vision=True)
        return cls(model, CompactTokenizer.from_config(config))

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    def to(self, device: str | torch.device) -> ClipEmbedder:
        self.model.to(device)
        return self

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised [B, embed_dim] for images in [-1, 1] of any size (resized to image_size)."""
        x = normalize_images(images.to(self.device), self.image_size)
        return self.model.encode_image(x, normalize=True).float()

    @torch.no_grad()
    def text_embeddings(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """L2-normalised [B, embed_dim]."""
        ids, _ = self.tokenizer(prompts)
        return self.model.encode_text(ids.to(self.device), normalize=True).float()

    @torch.no_grad()
    def clip_score(self, images: torch.Tensor, prompts: str | Sequence[str]) -> torch.Tensor:
        """[B] CLIP score of each (image, prompt) pair: 100 * max(cos, 0) (Hessel et al. 2021 use w=2.5
        on the same clipped cosine; 100x is the torchmetrics convention). One prompt is broadcast."""
        img = self.image_embeddings(images)
        txt = self.text_embeddings(prompts)
        if txt.shape[0] == 1 and img.shape[0] > 1:
            txt = txt.expand(img.shape[0], -1)
        if txt.shape[0] != img.shape[0]:
            raise ValueError(f"{img.shape[0]} images but {txt.shape[0]} prompts")
        return 100.0 * (img * txt).sum(-1).clamp(min=0)


def clip_param_summary(config: ClipConfig) -> dict[str, float]:
    """Parameter counts and fp16 size (MB) of the model `config` builds."""
    model = build_clip(config)
    vis = count_parameters(model.visual)
    total = count_parameters(model)
    return {"vision": vis, "text": total - vis, "total": total, "fp16_mb": total * 2 / 1e6,
            "token_embedding": model.token_embedding.weight.numel()}


__all__ = [
    "ClipConfig", "CompactTokenizer", "ClipEmbedder", "build_clip", "build_vocab", "clip_loss",
    "normalize_images", "encode_text_tokens", "clip_state_dict_and_config", "save_clip_folder",
    "load_clip_folder", "check_prompts", "count_parameters", "clip_param_summary", "bpe_tokenizer",
    "PAD_ID", "UNK_ID", "MAX_LOGIT_SCALE",
]
