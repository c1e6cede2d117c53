"""The markdown report of `core.evaluation.evaluate.evaluate`'s results, and their JSON form."""
from __future__ import annotations

import math
from collections.abc import Sequence

from core.evaluation.scorecard import format_scorecard


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def format_report(results: dict) -> str:
    """The markdown report of :func:`evaluate`'s results."""
    s = results["settings"]
    L = ["# Evaluation on the held-out split", "",
         f"checkpoints `{s['checkpoints']}`, device {s['device']} ({s['threads']} threads), "
         f"N = {s['n']} of {s['heldout_size']} held-out emoji, seed {s['seed']}, "
         f"steps {s['steps'] or 'stage defaults'}, guidance sweep {', '.join(_f(g, 1) for g in s['guidance'])}; "
         f"took {s.get('seconds', '?')} s.", ""]
    skipped = results.get("skipped", {})

    L += ["## CLIP", ""]
    if "clip" in results:
        c = results["clip"]
        L += [f"`{c['folder']}` is the same CLIP whose text tower conditions the text base, so CLIP "
              "scores of text-base samples are optimistic: read them against the real-image ceiling "
              "and the shuffled-caption floor below, not against published numbers.", "",
              f"Retrieval among the {c['n']} held-out images ({c['resolution']}x{c['resolution']}) and their "
              f"captions: image->text top-1 "
              f"{_f(c['image_to_text_top1'])}, text->image top-1 {_f(c['text_to_image_top1'])} "
              f"(chance {_f(c['chance'])}).", ""]
    else:
        L += [skipped.get("clip", "CLIP metrics skipped."), ""]

    if "classifiers" in results:
        L += ["## Classifiers (trained on real training images, 32x32)", ""]
        L += _table(["classifier", "classes", "train images", "held-out images", "held-out accuracy",
                     "majority class"],
                    [[t, c["classes"], c["train_images"], c["heldout_images"], _f(c["heldout_accuracy"]),
                      _f(c["chance_accuracy"])] for t, c in results["classifiers"].items()])
        L.append("")

    L += ["## Text base (32x32)", ""]
    if "text_base" in results:
        t = results["text_base"]
        ref = t["reference"]
        L += [f"N = {t['n']} held-out captions (one per emoji, e.g. " + "; ".join(f"\"{p}\"" for p in t["examples"][:2])
              + f"); {t['skin_tone_prompts']} name a skin tone, {t['gender_prompts']} a gender "
              "(man / woman / person). FD_CLIP: Frechet distance to the real held-out images in CLIP "
              "image-embedding space; N is small, so compare FD numbers only at equal N.", ""]
        rows = [["real held-out images, their captions (ceiling)", _f(ref.get("clip_score"), 2), "-",
                 _f(ref.get("skin_tone_match")), _f(ref.get("gender_match")), "-"],
                ["real held-out images, shuffled captions (floor)", _f(ref.get("clip_score_shuffled"), 2), "-",
                 "-", "-", "-"],
                [f"real training images (N = {t['n']}) vs real held-out", "-", _f(ref.get("fd_clip_real_train")),
                 "-", "-", "-"]]
        for r in t["sweep"]:
            rows.append([f"samples, guidance {_f(r['guidance'], 1)} ({r['sampler']}, {r['steps']} steps)",
                         _f(r.get("clip_score"), 2), _f(r.get("fd_clip")), _f(r.get("skin_tone_match")),
                         _f(r.get("gender_match")), _f(r["seconds"], 1)])
        L += _table(["images", "CLIP score", "FD_CLIP", "skin tone as asked", "gender as asked", "s"], rows)
        L += ["", "Skin tone / gender as asked: the fraction of images the classifiers rate as the tone / "
              "gender the caption names (for the real images: the classifiers' accuracy on them).", ""]
    else:
        L += [skipped.get("text_base", "text_base: not selected"), ""]

    L += ["## Class base (32x32)", ""]
    if "class_base" in results and "skipped" not in results["class_base"]:
        c = results["class_base"]
        ref = c["reference"]
        L += [f"N = {c['n']} held-out emoji ({c['classes']} classes), one sample each of its subgroup. "
              "CAS here = the subgroup classifier's accuracy on the samples, judged against the label "
              "asked for (Ravuri & Vinyals' CAS trains a classifier on samples and tests on real "
              "images; that needs far more samples than this run makes).", ""]
        rows = [["real held-out images", _f(ref.get("accuracy_top1")), _f(ref.get("accuracy_top5")), "-", "-"],
                [f"real training images (N = {c['n']}) vs real held-out", "-", "-",
                 _f(ref.get("fd_clip_real_train")), "-"]]
        for r in c["sweep"]:
            rows.append([f"samples, guidance {_f(r['guidance'], 1)} ({r['sampler']}, {r['steps']} steps)",
                         _f(r.get("accuracy_top1")), _f(r.get("accuracy_top5")), _f(r.get("fd_clip")),
                         _f(r["seconds"], 1)])
        L += _table(["images", "CAS top-1", "CAS top-5", "FD_CLIP", "s"], rows)
        L.append("")
    else:
        L += [results.get("class_base", {}).get("skipped")
              or skipped.get("class_base", "class_base: not selected"), ""]

    L += _judge_report(results)

    L += ["## Super-resolution stages", "",
          "From the real held-out low-res image (area-downsampled); PSNR (dB, on [0,1]) and SSIM against "
          "the real high-res image, averaged over images. SSIM: 11x11 Gaussian window (sigma 1.5), "
          "per RGB channel, averaged over channels, valid region.", ""]
    rows = []
    for name in ("sr64", "sr128"):
        if name in results:
            r = results[name]
            what = f"{r['low_resolution']}->{r['resolution']}"
            rows.append([f"{name} ({what}, N = {r['n']}, {r['sampler']} {r['steps']} steps, aug {r['aug_level']})",
                         _f(r["model"]["psnr"], 2), _f(r["model"]["ssim"]),
                         _f(r["bicubic"]["psnr"], 2), _f(r["bicubic"]["ssim"]), _f(r["seconds"], 1)])
    if "sr_chain" in results:
        r = results["sr_chain"]
        rows.append([f"both stages, 32->64->128 as the cascade runs them (N = {r['n']}, {r['sampler']} "
                     f"{' / '.join(map(str, r['steps']))} steps, aug {r['aug_level']})",
                     _f(r["model"]["psnr"], 2), _f(r["model"]["ssim"]),
                     _f(r["bicubic"]["psnr"], 2), _f(r["bicubic"]["ssim"]), _f(r["seconds"], 1)])
    if rows:
        L += _table(["stage", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM", "s"], rows)
        L.append("")
    for name in ("sr64", "sr128", "sr_chain"):
        if name in skipped:
            L.append(skipped[name])
    if any(name in skipped for name in ("sr64", "sr128", "sr_chain")):
        L.append("")

    L += ["## Timing", ""]
    if "timing" in results:
        t = results["timing"]
        st = ", ".join(f"{k}px {_f(v, 2)} s" for k, v in t["stages"].items())
        L += [f"One 128x128 text-to-image cascade, default settings ({' / '.join(map(str, t['steps']))} steps), "
              f"prompt \"{t['prompt']}\", on {t['device']} with {t['threads']} threads: "
              f"**{_f(t['seconds'], 2)} s** (per stage, approximately: {st}); models loaded beforehand.", ""]
    else:
        L += [skipped.get("timing", "timing: not run"), ""]
    return "\n".join(L)


def _judge_report(results: dict) -> list[str]:
    L = ["## Judge: recognisability, retrieval, FD in the judge's features", ""]
    if "prior" in results.get("skipped", {}):
        L += [results["skipped"]["prior"], ""]
    if "judge" not in results:
        return L + [results.get("skipped", {}).get("judge", "judge: not run (no base selected)"), ""]
    j = results["judge"]
    semantic = (f"; semantic base: prior {j['prior_sampler']} {j['prior_steps']} steps, decoder "
                f"{j['decoder_sampler']} {j['decoder_steps']} steps" if "prior_steps" in j else "")
    L += [f"Judge `{j['folder']}`; samples at the bases' defaults (pixel bases: {j['sampler']}, {j['steps']} steps"
          f"{semantic}; guidance = {_f(j['guidance'], 1)}, or the base's own default where its heading names one), "
          f"N = {j['n']} per split, seeds from the run's seed. "
          "Recognisable = accepted as an emoji and of the subgroup asked; vs real = that share over the real "
          "renders' share; "
          "retrieval@5 = the asked design is among the 5 real emoji nearest in the judge's features (a real "
          "render finds itself: the blurred row is the reference); FD(judge) to all real emoji of the "
          "split's population (compare at equal N). The (old) columns are the old measures on the same "
          "images: CLIP score with the CLIP that conditions the text base, CAS, the subgroup "
          "classifier trained on clean emoji only"
          + (f", and the verdicts of the old judge `{j['old_judge']}`" if j.get("old_judge") else "") + ".", ""]
    for name in ("text_base", "class_base", "semantic_text", "semantic_label"):
        if name not in j:
            continue
        r = j[name]
        own = f" (guidance = {_f(r['guidance'], 1)})" if r.get("guidance", j["guidance"]) != j["guidance"] else ""
        L += [f"### {name}{own}", ""]
        if "skipped" in r:
            L += [r["skipped"], ""]
            continue
        L += format_scorecard(r, r.get("old"))
        L.append("")
        if "grid" in r:
            g = r["grid"]
            L += [f"Grid `{g['path']}`: the judge recognises {_f(g.get('recognised'), 2)} of its cells.", ""]
    return L


def json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
