"""Loading a model folder: the one place that maps a checkpoint's config (its ``kind``) to the
class that runs it. The classes are imported when a folder of their kind is loaded, so that
reading a folder's JSON (`python -m core classes`) costs no torch import.

(`core.models.checkpoints` holds the folder format itself, which every model module uses; this
module stands above them.)"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.models.checkpoints import CONFIG_FILE, load_configured

if TYPE_CHECKING:
    import torch


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu", network: str = "auto"):
    """Load any model folder of a checkpoints root, the class chosen by its config's ``kind`` alone:
    the semantic prior, the CLIP text encoder, the noise-aware classifier, the code classifier or
    matcher, the tone painter, or a `DiffusionModel` (every other kind); float32 weights, eval mode. `network`
    (diffusion models): "auto" builds the UNet with `core.models.unet` when it covers the config
    (the same outputs, without importing diffusers), with diffusers otherwise; "core" or
    "diffusers" forces one."""
    folder = Path(folder)
    try:
        config_dict = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        config_dict = {}   # load_configured names what is wrong
    if not isinstance(config_dict, dict):
        config_dict = {}
    kind = config_dict.get("kind")
    if kind == "prior":   # the semantic prior: an MLP, no UNet
        from core.models.prior import PriorConfig, SemanticPrior  # deferred: torch (`classes` reads JSON only)
        return load_configured(folder, PriorConfig, SemanticPrior, device)
    if kind == "clip":
        from core.models.text_encoders import ClipTextEncoder  # deferred: torch
        return ClipTextEncoder.from_folder(folder).to(device)
    if kind == "noisy_classifier":
        from core.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig  # deferred: diffusers
        return load_configured(folder, NoisyClassifierConfig, NoisyClassifier, device)
    if kind in ("code_classifier", "code_matcher"):   # the models of the prior's codes that guide it
        from core.models.code_guidance import CodeClassifier, CodeGuideConfig, CodeMatcher  # deferred: torch
        return load_configured(folder, CodeGuideConfig, CodeMatcher if kind == "code_matcher" else CodeClassifier,
                               device)
    if kind == "tone_painter":
        from core.models.tone_painter import TonePainter, TonePainterConfig  # deferred: torch
        return load_configured(folder, TonePainterConfig, TonePainter, device)
    from core.models.networks import DiffusionModel, ModelConfig, upgrade_config  # deferred: torch
    if network == "auto":
        from core.models.unet import supports  # deferred: torch
        try:
            backbone = upgrade_config(config_dict).get("backbone", {})
        except ValueError:
            backbone = {}   # load_configured names what is wrong
        network = "core" if supports(backbone.get("type") == "cross_attention_unet", backbone.get("config", {})) \
            else "diffusers"
    return load_configured(folder, ModelConfig, DiffusionModel, device, network=network)
