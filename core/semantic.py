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

Classifier and CLIP guidance in code space (`code_guide`): the noise-aware code classifier
(`checkpoints/code_classifier`) or code-text matcher (`checkpoints/code_matcher`) of
`core.models.code_guidance` adds its gradient to the prior's prediction at every step,
eps' = eps - s sqrt(1 - ab_t) grad_z log p(y | z_t) (Dhariwal & Nichol 2021) or the same with
the matcher's similarity to the prompt (GLIDE's CLIP guidance). With prior guidance 0 (the
default of `generate` when either is asked) the prior runs unconditionally and the gradient alone
steers it; with guidance 1 or more it steers the conditional (classifier-free guided) prior.

Random streams: the prior's starting noise is drawn from seed * 1009 + 7 (`core.models.prior`), the
decoder's x_T from the seed itself (`core.diffae.fresh_noise`), so each seed is one image
whatever the batch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from core import diffae
from core.checks import check_finite
from core.diffusion.guidance import classifier_guided_denoiser, clip_guided_denoiser
from core.models.prior import FALLBACK_SAMPLING, SemanticPrior, sample_codes
from core.models.sampling import sampling_default
from core.pipeline import Guide, StageSettings

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
# The checkpoints' config.json `sampling` names these (the prior's: sampler, steps, guidance; the
# decoder's: sampler, steps); the code reads the loaded model's and uses these only without one.
PRIOR_DEFAULTS = StageSettings(**FALLBACK_SAMPLING)
DECODER_SAMPLER = "dpmpp-2m"
DECODER_STEPS = 10      # steps of the DiffAE decoder when it renders a sampled code
MAX_MIX = 1.0
# Classifier and CLIP guidance of the prior (`code_guide`): the scales of `generate` when only the method is
# asked, measured with the judge by `python scripts/guidance_prior.py` (docs/guidance_prior.md)
CODE_CLASSIFIER_SCALE = 10.0
CLIP_SCALE = 10.0
MAX_CODE_GUIDE_SCALE = 100.0

Callback = Callable[[dict], None]


def check_mix(mix) -> float:
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix <= MAX_MIX:
        raise ValueError(f"mix must be a number from 0 (the image) to 1 (the prompt), got {mix!r}")
    return float(mix)


def check_code_guide_scale(scale, what: str = "classifier scale") -> float:
    """A classifier- or CLIP-guidance scale of the prior: a finite number from 0 to MAX_CODE_GUIDE_SCALE."""
    scale = check_finite(what, scale)
    if not 0 <= scale <= MAX_CODE_GUIDE_SCALE:
        raise ValueError(f"{what} must be between 0 and {MAX_CODE_GUIDE_SCALE:g}, got {scale!r}")
    return scale


def code_guide(prior: SemanticPrior, *, classifier=None, label: str | Sequence[str] | None = None,
               classifier_scale: float = 0.0,
               matcher=None, pooled: torch.Tensor | None = None, clip_scale: float = 0.0,
               batch: int = 1) -> Guide | None:
    """The wrapper of the prior's denoiser that adds classifier guidance towards `label` (one for the
    batch, or one per sample; the code classifier, `classifier_scale`) and CLIP guidance towards the
    text `pooled` [1 or B, text_dim]
    (the code matcher, `clip_scale`); None when both scales are 0. A missing model is named."""
    from core.models.code_guidance import check_compatible, class_log_prob, text_similarity  # deferred: its own module
    classifier_scale = check_code_guide_scale(classifier_scale, "classifier scale")
    clip_scale = check_code_guide_scale(clip_scale, "CLIP scale")
    wrappers = []
    if classifier_scale > 0 or classifier is not None:
        if classifier is None:
            raise ValueError("classifier guidance of the prior needs its code classifier (checkpoints/code_classifier; "
                             "`python -m core train code_classifier` trains it)")
        if label is None:
            raise ValueError("classifier guidance steers towards a class: give a label")
        check_compatible(classifier, prior)
        names = [label] * batch if isinstance(label, str) else list(label)
        labels = classifier.label_indices(names)   # ValueError naming an unknown class
        if classifier_scale > 0:
            wrappers.append(lambda d: classifier_guided_denoiser(d, prior.schedule, class_log_prob(classifier, labels),
                                                                 classifier_scale))
    if clip_scale > 0 or matcher is not None:
        if matcher is None:
            raise ValueError("CLIP guidance of the prior needs its code-text matcher (checkpoints/code_matcher; "
                             "`python -m core train code_matcher` trains it)")
        if pooled is None:
            raise ValueError("CLIP guidance steers towards a text: give a prompt")
        check_compatible(matcher, prior)
        if clip_scale > 0:
            similarity = text_similarity(matcher, pooled.to(prior.code_mean.device))
            wrappers.append(lambda d: clip_guided_denoiser(d, prior.schedule, similarity, clip_scale))
    if not wrappers:
        return None

    def guide(denoiser):
        for wrap in wrappers:
            denoiser = wrap(denoiser)
        return denoiser

    return guide


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
                          guidance: float | None = None, steps: int | None = None,
                          sampler: str | None = None, classifier=None, classifier_scale: float = 0.0,
                          matcher=None, clip_scale: float = 0.0) -> torch.Tensor:
    """z_sem [len(seeds), D] for one prompt or label, with classifier-free guidance `guidance` (0: the
    unconditional prior) and, given their models, classifier guidance towards the label
    (`classifier_scale`) or CLIP guidance towards the prompt (`clip_scale`) on top (`code_guide`).
    Guidance, steps and sampler left out are the prior's (its config's `sampling`)."""
    cond, uncond = prior_cond(prior, text_encoder, prompt, label, negative_prompt, len(seeds))
    pooled = cond["text"][:1] if prompt is not None else None
    guide = code_guide(prior, classifier=classifier, label=label, classifier_scale=classifier_scale, matcher=matcher,
                       pooled=pooled, clip_scale=clip_scale, batch=len(seeds))
    return sample_codes(prior, cond, uncond, seeds, guidance, steps, sampler, guide=guide)


def decoder_sampling(decoder, key: str):
    """The DiffAE decoder's default sampler or steps when it draws a sampled code: its config's
    `sampling`, else DECODER_SAMPLER / DECODER_STEPS."""
    return sampling_default(decoder, key, {"sampler": DECODER_SAMPLER, "steps": DECODER_STEPS}[key])


def render(decoder, z_sem: torch.Tensor, seeds: Sequence[int], steps: int | None = None,
           callback: Callback | None = None, sampler: str | None = None,
           guidance: float | None = None) -> torch.Tensor:
    """The DiffAE decoder's image of each code with fresh noise x_T (one generator per seed),
    sampled deterministically from x_T given z_sem by `sampler` (`core.diffae.decode`), with the
    decoder's guidance on z_sem (`decoder_guidance`: None is the checkpoint's default); steps and
    sampler left out are the decoder's (`decoder_sampling`)."""
    steps = decoder_sampling(decoder, "steps") if steps is None else steps
    sampler = decoder_sampling(decoder, "sampler") if sampler is None else sampler
    with torch.no_grad():
        return diffae.decode(decoder, z_sem, diffae.fresh_noise(decoder, seeds), steps, callback, sampler,
                             guidance=diffae.fresh_noise_guidance(decoder, guidance))


def generate_semantic(prior: SemanticPrior, decoder, text_encoder, *, prompt: str | None = None,
                      label: str | None = None, negative_prompt: str = "", seeds: Sequence[int] = (0,),
                      guidance: float | None = None, steps: int | None = None,
                      sampler: str | None = None, decoder_steps: int | None = None,
                      callback: Callback | None = None, decoder_guidance: float | None = None,
                      classifier=None, classifier_scale: float = 0.0, matcher=None,
                      clip_scale: float = 0.0, code_shift: torch.Tensor | None = None) -> torch.Tensor:
    """Text or label -> z_sem -> [B, 3, r, r] images in [-1, 1] at the decoder's resolution
    (`decoder_guidance`: None is the decoder checkpoint's); classifier / CLIP guidance of the prior as
    in `sample_semantic_codes`. `code_shift` [D] is added to every code before decoding (a skin
    tone's offset: `core.tone_words`)."""
    z = sample_semantic_codes(prior, text_encoder, prompt=prompt, label=label, negative_prompt=negative_prompt,
                              seeds=seeds, guidance=guidance, steps=steps, sampler=sampler, classifier=classifier,
                              classifier_scale=classifier_scale, matcher=matcher, clip_scale=clip_scale)
    if code_shift is not None:
        z = z + code_shift.to(z)
    return render(decoder, z, seeds, decoder_steps, callback, guidance=decoder_guidance)


def variations(decoder, image: torch.Tensor, seeds: Sequence[int], *, prior: SemanticPrior | None = None,
               text_encoder=None, prompt: str | None = None, mix: float = 0.0,
               guidance: float | None = None, steps: int | None = None,
               decoder_steps: int | None = None,
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
