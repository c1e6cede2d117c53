"""A checkpoint's sampling defaults: the sampler, steps and guidance (an SR stage's noise level,
the DiffAE decoder's inversion steps) measured for it, kept in its config.json under ``sampling``
(its model card says how they were measured). `sampling_default` is the one reader: the command
line, the Python functions and the tabs ask it for a loaded model, and use the code's value (the
`fallback`) only for a model whose config names none, e.g. one trained just now."""
from __future__ import annotations

from typing import Any


def sampling_defaults(model: Any) -> dict:
    """The ``sampling`` entry of a model's config (or of a config itself); {} when there is none."""
    config = getattr(model, "config", model)
    sampling = getattr(config, "sampling", None)
    return dict(sampling) if isinstance(sampling, dict) else {}


def sampling_default(model: Any, key: str, fallback: Any = None) -> Any:
    """The default `key` (sampler, steps, guidance, ...) of a model's sampling, as its config names
    it; `fallback` when the config names none or there is no model (None)."""
    if model is None:
        return fallback
    return sampling_defaults(model).get(key, fallback)
