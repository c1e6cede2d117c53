"""The semantic base: text or a label -> z_sem (the prior) -> a 32 px image (the DiffAE decoder),
and image variations through the same code (DALL-E 2, Ramesh et al. 2022, sec. 2 and 3.1).

Generation (the "semantic" base of `core.cascade.generate`): the prior (`core.models.prior`) samples a
semantic code for the prompt or label with classifier-free guidance (`PRIOR_DEFAULTS`); the
DiffAE decoder renders it with fresh noise x_T by a deterministic sampler (`DECODER_SAMPLER`,
`DECODER_STEPS`). The SR stages then take the 32 px image as they take the pixel base's.

Variations: an image's own z_sem = Enc(x0), decoded with fresh noise: the same semantics, new
details (DALL-E 2 sec. 3.1). Text-guided variations move the normalised code towards the prior's
sample for a prompt, zn' = (1 - mix) * zn_image + mix * zn_prompt, before decoding (a linear
path in the normalised space the prior models, as DiffAE interpolates z_sem linearly).

Random streams: the prior's starting noise is drawn from seed * 1009 + 7 (`core.models.prior`), the
decoder's x_T from the seed itself (`core.diffae.fresh_noise`), so each seed is one image
whatever the batch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from core import diffae
from core.models.prior import SemanticPrior, sample_codes
from core.pipeline import StageSettings

SEMANTIC_MODELS = ("prior", "diffae")
# Measured with the judge (`python scripts/sweep_semantic.py`, N = 64 per split, text and label
# splits, seed sets 0-2; mean recognisable and mean FD(judge) over the five splits per seed set):
# - the prior: 25 DDIM steps on the leading grid, 0.688 / 0.681 / 0.669 and 13.4 / 13.9 / 14.5.
#   10 DPM-Solver++ steps match it on names but lose on labels (other subgroups recognisable 0.52 /
#   0.45 / 0.52 against 0.56 / 0.53 / 0.52); on the trailing grid FD(judge) of labels rises by 1-2.
#   The prior is an MLP over a 256-d code: its 25 steps take 0.08 s per image on 2 CPU cores (10 steps
#   of the decoder 0.13 s, scripts/bench_generate.py), so it keeps them.
# - the decoder: 10 DPM-Solver++(2M) steps on the trailing grid, 0.688 / 0.691 / 0.681 and 13.3 /
#   13.8 / 14.4, as good as 25 DDIM steps (the default before) on every seed set and by eye;
#   10 DDIM steps are not (FD(judge) 15.5 / 15.9 / 16.5).
PRIOR_DEFAULTS = StageSettings(sampler="ddim", steps=25, guidance=3.0)
DECODER_SAMPLER = "dpmpp-2m"
DECODER_STEPS = 10      # steps of the DiffAE decoder when it renders a sampled code
MAX_MIX = 1.0

Callback = Callable[[dict], None]


def check_mix(mix) -> float:
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix <= MAX_MIX:
        raise ValueError(f"mix must be a number from 0 (the image) to 1 (the prompt), got {mix!r}")
    return float(mix)


def prior_cond(prior: SemanticPrior, text_encoder, prompt: str | None, label: str | None,
               negative_prompt: str, batch: int) -> tuple[dict, dict]:
    """(cond, uncond) of the prior for `batch` samples of one prompt or one label. A negative
    prompt replaces the null text in the unconditional half (as for the pixel base)."""
    if (prompt is None) == (label is None):
        raise ValueError("give exactly one of prompt or label")
    device = prior.code_mean.device
    if prompt is not None:
        pooled = text_encoder.encode([prompt]).pooled.to(device).expand(batch, -1)
        cond = prior.text_cond(pooled)
    else:
        cond = prior.label_cond([label] * batch)
    if negative_prompt:
        uncond = prior.text_cond(text_encoder.encode([negative_prompt]).pooled.to(device).expand(batch, -1))
    else:
        uncond = prior.null_cond(batch, device)
    return cond, uncond


def sample_semantic_codes(prior: SemanticPrior, text_encoder, *, prompt: str | None = None, label: str | None = None,
                          negative_prompt: str = "", seeds: Sequence[int] = (0,),
                          guidance: float = PRIOR_DEFAULTS.guidance, steps: int = PRIOR_DEFAULTS.steps,
                          sampler: str = PRIOR_DEFAULTS.sampler) -> torch.Tensor:
    """z_sem [len(seeds), D] for one prompt or label."""
    cond, uncond = prior_cond(prior, text_encoder, prompt, label, negative_prompt, len(seeds))
    return sample_codes(prior, cond, uncond, seeds, guidance, steps, sampler)


def render(decoder, z_sem: torch.Tensor, seeds: Sequence[int], steps: int = DECODER_STEPS,
           callback: Callback | None = None, sampler: str = DECODER_SAMPLER,
           guidance: float | None = None) -> torch.Tensor:
    """The DiffAE decoder's image of each code with fresh noise x_T (one generator per seed),
    sampled deterministically from x_T given z_sem by `sampler` (`core.diffae.decode`), with the
    decoder's guidance on z_sem (`decoder_guidance`: None is the checkpoint's default)."""
    with torch.no_grad():
        return diffae.decode(decoder, z_sem, diffae.fresh_noise(decoder, seeds), steps, callback, sampler,
                             guidance=diffae.fresh_noise_guidance(decoder, guidance))


def generate_semantic(prior: SemanticPrior, decoder, text_encoder, *, prompt: str | None = None,
                      label: str | None = None, negative_prompt: str = "", seeds: Sequence[int] = (0,),
                      guidance: float = PRIOR_DEFAULTS.guidance, steps: int = PRIOR_DEFAULTS.steps,
                      sampler: str = PRIOR_DEFAULTS.sampler, decoder_steps: int = DECODER_STEPS,
                      callback: Callback | None = None, decoder_guidance: float | None = None) -> torch.Tensor:
    """Text or label -> z_sem -> [B, 3, r, r] images in [-1, 1] at the decoder's resolution
    (`decoder_guidance`: None is the decoder checkpoint's)."""
    z = sample_semantic_codes(prior, text_encoder, prompt=prompt, label=label, negative_prompt=negative_prompt,
                              seeds=seeds, guidance=guidance, steps=steps, sampler=sampler)
    return render(decoder, z, seeds, decoder_steps, callback, guidance=decoder_guidance)


def variations(decoder, image: torch.Tensor, seeds: Sequence[int], *, prior: SemanticPrior | None = None,
               text_encoder=None, prompt: str | None = None, mix: float = 0.0,
               guidance: float = PRIOR_DEFAULTS.guidance, steps: int = PRIOR_DEFAULTS.steps,
               decoder_steps: int = DECODER_STEPS,
               callback: Callback | None = None, decoder_guidance: float | None = None) -> torch.Tensor:
    """len(seeds) variations of one image [1, 3, r, r] (or [3, r, r]) in [-1, 1]: its z_sem
    decoded with fresh noise; with a prompt and mix > 0, z_sem moved towards the prior's code
    for the prompt first (the prompt's code drawn with the same seed)."""
    mix = check_mix(mix)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"variations takes one image [1, 3, H, W], got {tuple(image.shape)}")
    if prompt is not None and not prompt.strip():
        prompt = None
    if mix > 0 and prompt is None:
        raise ValueError("mix > 0 moves the image towards a prompt: give a prompt (or set mix to 0)")
    z = diffae.semantic_code(decoder, image).expand(len(seeds), -1)
    if prompt is not None and mix > 0:
        if prior is None or text_encoder is None:
            raise ValueError("text-guided variations need the semantic prior and its text encoder")
        z_prompt = sample_semantic_codes(prior, text_encoder, prompt=prompt, seeds=seeds, guidance=guidance,
                                         steps=steps).to(z.device)
        zn = torch.lerp(prior.normalise(z), prior.normalise(z_prompt), mix)
        z = prior.denormalise(zn)
    return render(decoder, z, seeds, decoder_steps, callback, guidance=decoder_guidance)
