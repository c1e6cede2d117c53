"""How a base model is conditioned: the text base on a prompt against the negative (or empty)
prompt, the class base on a label against the null label; with no prompt or label, the model
alone, unguided (guidance 1)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from core.bases import PIXEL_MODELS
from core.models.networks import DiffusionModel
from core.pipeline import StageSettings, class_conds, null_conds


def text_conds(encoder, prompt: str | None, negative_prompt: str, n: int, settings: StageSettings):
    """(cond, uncond, settings): the prompt against the negative / empty prompt, or, with no
    prompt, the empty prompt alone at guidance 1 (unguided)."""
    if not prompt or not prompt.strip():
        emb = encoder.encode([""] * n)
        return emb.as_cond(), None, replace(settings, guidance=1.0)
    emb, neg = encoder.encode([prompt] * n), encoder.encode([negative_prompt] * n)
    return emb.as_cond(), neg.as_cond(), settings


def base_conds(base: DiffusionModel, seeds: Sequence[int], settings: StageSettings, encoder=None,
               prompt: str | None = None, label: str | None = None,
               negative_prompt: str = "") -> tuple[dict, dict | None, StageSettings]:
    """(cond, uncond, settings) of a base model for one sample per seed: the text base with a
    prompt (CFG against the negative / empty prompt) or unguided on the empty prompt; the class
    base with a label (CFG against the null label) or unconditional on the null label (guidance
    then 1). A code class base draws each seed's code noise (`core.pipeline.class_conds`)."""
    n = len(seeds)
    if base.kind == "text_base":
        if label:
            raise ValueError("a label is for the class base; the text base takes a prompt")
        if encoder is None:
            raise ValueError("the text base needs its text encoder")
        return text_conds(encoder, prompt, negative_prompt, n, settings)
    if base.kind == "class_base":
        if prompt and prompt.strip():
            raise ValueError("the class base takes a label, not a prompt")
        if not label:
            return null_conds(base, n, seeds), None, replace(settings, guidance=1.0)
        return *class_conds(base, [label] * n, seeds), settings
    raise ValueError(f"this needs a base model ({' or '.join(PIXEL_MODELS)}), got kind {base.kind!r}")
