"""The judge and the scorecard: designs, degradations, the metrics, the harness on toy samplers, grids."""
import json

import pytest
import torch

from core.cli.main import main
from core.data.emoji import EmojiRecord
from core.evaluation.judge import Judge, JudgeError, design_of, feature_fd, recognisability, retrieval, round_trip
from core.evaluation.scorecard import (
    GRID_EMOJI,
    GRID_PROMPTS,
    LABEL_SPLITS,
    TEXT_SPLITS,
    base_sampler,
    fixed_grid,
    labelled_grid,
    prompt_of,
    scorecard,
)
from core.models.checkpoints import DEFAULT_CHECKPOINTS
from core.training.judge import JudgeSettings, train_judge
from core.training.judge_images import NEGATIVE_KINDS, SAMPLED_KINDS, degrade, gaussian_blur, geometric

COMMITTED = DEFAULT_CHECKPOINTS / "judge"
needs_committed = pytest.mark.skipif(not (COMMITTED / "config.json").is_file(), reason="no committed judge")


def record(name, group="People & Body", subgroup="person-activity"):
    return EmojiRecord(emoji="?", codepoints=(0x1F600,), name=name, group=group, subgroup=subgroup, version="E1.0",
                       skin_tone="none", skin_tones=(), gender="none")


@pytest.mark.parametrize("name,group,design", [
    ("woman dancing: dark skin tone", "People & Body", "dancing"),
    ("man dancing", "People & Body", "dancing"),
    ("man artist: light skin tone", "People & Body", "artist"),
    ("artist", "People & Body", "artist"),
    ("person running", "People & Body", "running"),
    ("kiss: woman, man, medium skin tone", "People & Body", "kiss"),
    ("family: man, woman, boy", "People & Body", "family: person, person, child"),
    ("girl: dark skin tone", "People & Body", "child"),
    ("old man", "People & Body", "older person"),
    ("Santa Claus: light skin tone", "People & Body", "mx claus"),
    ("man's shoe", "Objects", "man's shoe"),
    ("red apple", "Food & Drink", "red apple"),
    ("flag: Japan", "Flags", "flag: japan"),
])
def test_design_of(name, group, design):
    assert design_of(record(name, group)) == design


# --------------------------------------------------------------------------- degradations

@pytest.fixture(scope="module")
def data():
    from core.data.emoji import load_dataset
    return load_dataset()


def _named(data, names):
    return [data.index_of(n) for n in names]


NAMES = ["red heart", "red apple", "rocket", "cat face", "grinning face", "thumbs up", "pizza", "fire"]


@pytest.mark.parametrize("kind", [k for k in NEGATIVE_KINDS if k not in SAMPLED_KINDS])
def test_degradations_are_seeded_images(data, kind):
    x = geometric(data.images_at(64, _named(data, NAMES)), torch.Generator().manual_seed(0))
    a = degrade(x, kind, torch.Generator().manual_seed(1))
    b = degrade(x, kind, torch.Generator().manual_seed(1))
    assert a.shape == x.shape == (8, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and not torch.allclose(a, x)


def test_blur_and_round_trips():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)   # a blur keeps a constant image
    assert gaussian_blur(x, 3.0).std() < gaussian_blur(x, 1.0).std() < x.std()
    assert round_trip(x, 16).shape == x.shape and round_trip(x, 8).std() < round_trip(x, 16).std()


# --------------------------------------------------------------------------- a small trained judge

TINY = JudgeSettings(steps=200, batch=16, width=8, max_train=64, poor=0, warmup=10, lr=1e-2,
                     negatives=("blur", "mean_blob", "noise"))


@pytest.fixture(scope="module")
def tiny_judge(data):
    judge = train_judge(data, TINY, log=None)
    return judge.set_reference(data)


def test_training_is_seeded_and_never_sees_held_out_for_the_twin(data):
    settings = JudgeSettings(steps=2, batch=4, width=4, max_train=16, poor=0, include_heldout=False)
    a, b = train_judge(data, settings, log=None), train_judge(data, settings, log=None)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    from core.training.judge import training_indices
    assert not data.heldout[training_indices(data, settings)].any()


def test_tiny_judge_accepts_its_emoji_and_rejects_blobs_and_blur(data, tiny_judge):
    from core.training.judge import training_indices
    idx = training_indices(data, TINY)[:48]
    real = data.images_at(32, idx)
    g = torch.Generator().manual_seed(5)
    base = geometric(data.images_at(64, idx), g, shift=0.0, scale=(1.0, 1.0))
    real_p = tiny_judge.realism(real).mean()
    for kind in ("blur", "mean_blob", "noise"):
        assert tiny_judge.realism(degrade(base, kind, g)).mean() < real_p - 0.3, kind


def test_retrieval_of_real_images_finds_their_design(data, tiny_judge):
    idx = _named(data, NAMES)
    real = data.images_at(32, idx)
    assert retrieval(tiny_judge, real, idx, k=1).all()            # a real render finds itself
    wrong = idx[1:] + idx[:1]                                       # asked for another emoji: not found
    assert not retrieval(tiny_judge, real, wrong, k=1).any()
    with pytest.raises(ValueError):
        retrieval(tiny_judge, real, idx[:3])
    # several acceptable emoji per image (the everyday prompts): a hit when any of them is found
    either = [[w, i] for w, i in zip(wrong, idx)]
    assert retrieval(tiny_judge, real, either, k=1).all()
    assert not retrieval(tiny_judge, real, [[w] for w in wrong], k=1).any()


def test_recognisability_needs_both_emoji_and_subgroup(data, tiny_judge):
    idx = _named(data, NAMES)
    real = data.images_at(32, idx)
    blobs = degrade(real, "mean_blob", torch.Generator().manual_seed(0))
    x = torch.cat([real, blobs])
    out = tiny_judge.outputs(x)
    asked = [data.records[i].subgroup for i in idx] * 2
    accepted = out["realism"] > tiny_judge.threshold
    right = out["subgroup"].argmax(1) == torch.tensor([tiny_judge.subgroup_index(s) for s in asked])
    assert torch.equal(recognisability(tiny_judge, x, asked), accepted & right)
    other = [tiny_judge.subgroups[(tiny_judge.subgroup_index(s) + 1) % len(tiny_judge.subgroups)] for s in asked]
    wrong = recognisability(tiny_judge, x, other)
    assert torch.equal(wrong, accepted & (out["subgroup"].argmax(1) == torch.tensor(
        [tiny_judge.subgroup_index(s) for s in other])))


def test_accepted_needs_the_head_and_the_manifold(data, tiny_judge):
    idx = _named(data, NAMES)
    real = data.images_at(32, idx)
    x = torch.cat([real, degrade(real, "shuffle", torch.Generator().manual_seed(0)), -real])
    out = tiny_judge.scores(x)
    assert 0.5 < tiny_judge.manifold < 1 and tiny_judge.info["manifold_threshold"] == tiny_judge.manifold
    assert torch.allclose(out["nearest"][:8], torch.ones(8), atol=1e-4)    # a real render is its own nearest
    assert out["nearest"][16:].max() < 0.999
    assert torch.equal(out["accepted"],
                       (out["realism"] > tiny_judge.threshold) & (out["nearest"] >= tiny_judge.manifold))
    assert torch.equal(tiny_judge.accept(x), out["accepted"])


def test_thresholds_are_a_quantile_of_real_emoji_through_16px(data, tiny_judge):
    from core.training.judge import MANIFOLD_QUANTILE, calibrate, training_indices
    idx = training_indices(data, TINY)
    t = calibrate(tiny_judge, data, idx, quantile=0.25)
    out = tiny_judge.outputs(round_trip(data.images_at(32, idx), 16))
    near = tiny_judge.nearest(out["features"])
    # each test passes three quarters of them
    assert float((near >= t["manifold_threshold"]).float().mean()) == pytest.approx(0.75, abs=0.03)
    assert float((out["realism"] >= t["threshold"]).float().mean()) == pytest.approx(0.75, abs=0.03)
    wide = calibrate(tiny_judge, data, idx)                                   # the default 5th percentile
    assert wide["manifold_threshold"] < t["manifold_threshold"] and wide["threshold"] < t["threshold"]
    assert tiny_judge.info["manifold_quantile"] == MANIFOLD_QUANTILE == 0.05
    assert tiny_judge.threshold == tiny_judge.info["threshold"] and 0 < tiny_judge.threshold < 1


def test_feature_fd(data, tiny_judge):
    a = data.images_at(32, data.indices("train")[:40])
    assert feature_fd(tiny_judge, a, a) == pytest.approx(0.0, abs=1e-3)
    blobs = degrade(a, "mean_blob", torch.Generator().manual_seed(0))
    assert feature_fd(tiny_judge, a, blobs) > feature_fd(tiny_judge, a, round_trip(a, 16)) > 0


def test_save_load_round_trip_and_errors(tmp_path, data, tiny_judge):
    tiny_judge.save(tmp_path / "j", "# tiny judge\n")
    again = Judge.load(tmp_path / "j")
    x = data.images_at(32, _named(data, NAMES))
    assert torch.allclose(again.outputs(x)["realism"], tiny_judge.outputs(x)["realism"], atol=2e-2)  # fp16
    assert again.subgroups == tiny_judge.subgroups and "design.weight" not in again.model.state_dict()
    (tmp_path / "j" / "model.safetensors").unlink()
    with pytest.raises(JudgeError, match="model.safetensors"):
        Judge.load(tmp_path / "j")
    with pytest.raises(JudgeError, match="nowhere does not exist"):
        Judge.load(tmp_path / "nowhere")
    cfg = json.loads((tmp_path / "j" / "config.json").read_text())
    tiny_judge.save(tmp_path / "k", "")
    (tmp_path / "k" / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "subgroups"}))
    with pytest.raises(JudgeError, match="subgroups"):
        Judge.load(tmp_path / "k")


def test_score_cli(tmp_path, data, tiny_judge, capsys):
    from core.images import save_png, tensor_to_pil
    tiny_judge.save(tmp_path / "j", "")
    save_png(tensor_to_pil(data.images_at(32, _named(data, ["rocket"])))[0], tmp_path / "a.png", {})
    assert main(["judge", "score", str(tmp_path / "a.png"), "--judge", str(tmp_path / "j")]) == 0
    out = capsys.readouterr().out
    assert "a.png:" in out and "realism" in out and "nearest real emoji" in out
    assert main(["judge", "score", str(tmp_path / "a.png"), "--judge", str(tmp_path / "none")]) == 2
    assert "none does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- the committed judge

@pytest.mark.slow
@needs_committed
def test_committed_judge_rejects_blurs_and_blobs_and_accepts_real(data):
    judge = Judge.load(COMMITTED)
    idx = _named(data, NAMES + ["sun", "automobile", "dog face", "star"])
    real = data.images_at(32, idx)
    assert judge.accept(real).float().mean() >= 0.9
    assert judge.accept(round_trip(real, 16)).float().mean() >= 0.75
    g = torch.Generator().manual_seed(3)
    base = geometric(data.images_at(64, idx), g, shift=0.0, scale=(1.0, 1.0))
    for kind in ("blur", "pixelate", "mean_blob", "colour_blob", "shuffle"):
        assert judge.accept(degrade(base, kind, g)).float().mean() <= 0.25, kind


@pytest.mark.slow
@needs_committed
def test_committed_judge_accepts_held_out_emoji_and_has_its_manifold(data):
    judge = Judge.load(COMMITTED).set_reference(data)
    assert judge.manifold is not None and 0.5 < judge.manifold < 1 and 0 < judge.threshold < 1
    heldout = data.images_at(32, data.indices("heldout"))
    assert judge.accept(heldout).float().mean() >= 0.9
    assert judge.accept(round_trip(heldout, 16)).float().mean() >= 0.85
    # an emoji's colours in its silhouette, and its drawing warped away, are no emoji
    g = torch.Generator().manual_seed(4)
    base = geometric(data.images_at(64, data.indices("heldout")[:64]), g, shift=1.0, scale=(0.95, 1.05))
    for kind in ("colour_blob", "smear", "warp", "chimera"):
        assert judge.accept(degrade(base, kind, g)).float().mean() <= 0.15, kind


@pytest.mark.slow
@needs_committed
def test_committed_judge_retrieves_blurred_real_emoji(data):
    judge = Judge.load(COMMITTED).set_reference(data)
    idx = data.indices("heldout")[:32].tolist()
    assert retrieval(judge, round_trip(data.images_at(32, idx), 16), idx).float().mean() >= 0.8


# --------------------------------------------------------------------------- the harness


def real_sampler(data):
    """A toy generator that draws the real emoji a prompt names (a label: one of its subgroup)."""
    by_prompt = {prompt_of(r): i for i, r in enumerate(data.records)}
    by_sub = {}
    for i, r in enumerate(data.records):
        by_sub.setdefault(r.subgroup, i)
    calls = []

    def sample(asked, seeds):
        calls.append((list(asked), list(seeds)))
        return data.images_at(32, [by_prompt.get(GRID_EMOJI.get(a, a), by_sub.get(a)) for a in asked])
    sample.calls = calls
    return sample


def blob_sampler(data):
    real = real_sampler(data)
    return lambda asked, seeds: degrade(real(asked, seeds), "mean_blob", torch.Generator().manual_seed(seeds[0]))


def test_scorecard_real_scores_higher_than_blobs(data, tiny_judge):
    sample = real_sampler(data)
    card = scorecard(sample, "text", tiny_judge, data, n=6, seed=3)
    assert list(card.results["splits"]) == list(TEXT_SPLITS)
    assert all(seeds == [3, 4, 5, 6, 7, 8] for _, seeds in sample.calls)
    for split, s in card.results["splits"].items():
        rows = s["rows"]
        assert set(rows) == {"samples", "real", "real_16px"} and s["n"] == 6
        assert rows["samples"] == pytest.approx(rows["real"])        # the toy draws exactly the real renders
        assert rows["samples"]["retrieval"] == 1.0
        assert card.images[split]["samples"].shape == (6, 3, 32, 32)
    blobs = scorecard(blob_sampler(data), "text", tiny_judge, data, n=6, seed=3).results["splits"]
    for split in TEXT_SPLITS:
        real_rows = card.results["splits"][split]["rows"]["samples"]
        assert blobs[split]["rows"]["samples"]["accepted"] < real_rows["accepted"]
        assert blobs[split]["rows"]["samples"]["fd_judge"] > real_rows["fd_judge"]


def test_scorecard_labels(data, tiny_judge):
    classes = ["cat-face", "tool", "person-activity", "hand-fingers-open", "face-smiling"]
    sample = real_sampler(data)
    card = scorecard(sample, "label", tiny_judge, data, n=4, classes=classes)
    assert list(card.results["splits"]) == list(LABEL_SPLITS)
    people = set(card.asked[LABEL_SPLITS[0]])
    assert people <= {"person-activity", "hand-fingers-open"} and set(card.asked[LABEL_SPLITS[1]]) <= set(classes)
    assert "retrieval" not in card.results["splits"][LABEL_SPLITS[0]]["rows"]["samples"]
    with pytest.raises(ValueError, match="sampler must return"):
        scorecard(lambda a, s: torch.zeros(1, 3, 32, 32), "label", tiny_judge, data, n=4, classes=classes)


def test_labelled_grid_and_fixed_grid(tmp_path, data, tiny_judge):
    from PIL import Image
    x = data.images_at(32, _named(data, NAMES[:5]))
    path = labelled_grid(x, [f"cell {i}\nline two" for i in range(5)], tmp_path / "g.png", columns=3, scale=2)
    im = Image.open(path)
    assert im.size[0] == 3 * (64 + 8) and im.size[1] > 2 * 64
    res = fixed_grid(real_sampler(data), "text", tiny_judge, tmp_path / "f.png", data)
    assert [c[0] for c in res["cells"]] == [p for p in GRID_PROMPTS for _ in range(2)]
    assert all(v in ("recognised", "not an emoji", "wrong subgroup") for _, v in res["cells"])
    assert (tmp_path / "f.png").is_file() and 0 <= res["recognised"] <= 1


def test_base_sampler_matches_the_cascade(tiny_checkpoints):
    from core.cascade import generate
    from core.models.modelset import ModelSet
    from core.pipeline import StageSettings
    models = ModelSet(tiny_checkpoints, "cpu")
    fast = StageSettings(steps=2)
    for kind, asked, key in (("text", ["thumbs up", "red apple"], "prompt"),
                             ("label", ["cat-face", "person-activity"], "label")):
        got = base_sampler(models, kind, fast, batch=1)(asked, [4, 9])
        want = torch.cat([generate(models, **{key: a}, seed=s, size=32, base=fast, base_model="pixel").final
                          for a, s in zip(asked, [4, 9])])
        assert torch.allclose(got, want, atol=1e-5), kind


# --------------------------------------------------------------------------- attribute retention


class NearestRealClassifier:
    """A 1-nearest-neighbour classifier of a task over the real 32 px renders that have a label
    for it: a real render is rated as its own label, exactly (the interface of core.evaluation.classifiers'
    Classifier that attribute retention uses: ``classes``, ``index``, ``predict``)."""

    def __init__(self, data, task):
        from core.evaluation.classifiers import task_classes, task_label
        self.classes = task_classes(task, data)
        idx = [i for i, r in enumerate(data.records) if task_label(task, r) is not None]
        self.reference = data.images_at(32, idx).flatten(1)
        self.labels = torch.tensor([self.classes.index(task_label(task, data.records[i])) for i in idx])

    def index(self, name):
        return self.classes.index(name)

    def predict(self, images):
        return self.labels[torch.cdist(images.flatten(1), self.reference).argmin(1)]


@pytest.fixture(scope="module")
def nn_classifiers(data):
    return {task: NearestRealClassifier(data, task) for task in ("skin_tone", "gender")}


def toneless_sampler(data):
    """Draws the emoji a prompt names without its skin tone ("woman dancing, dark skin tone" ->
    the yellow "woman dancing"): the gender kept, the tone lost."""
    import re
    by_prompt = {prompt_of(r): i for i, r in enumerate(data.records)}
    by_name = {r.name: i for i, r in enumerate(data.records)}

    def toneless(i):
        name = re.sub(r"(: |, )(light|medium-light|medium|medium-dark|dark) skin tone", "", data.records[i].name)
        return by_name.get(name, i)
    return lambda asked, seeds: data.images_at(32, [toneless(by_prompt[a]) for a in asked])


def test_attribute_retention_of_real_and_toneless_samples(data, tiny_judge, nn_classifiers):
    from core.evaluation.scorecard import asked_attributes, attribute_retention
    assert asked_attributes(data.records[data.index_of("woman dancing: dark skin tone")]) == {
        "skin_tone": "dark", "gender": "woman"}
    assert asked_attributes(data.records[data.index_of("person running")]) == {"gender": "person"}
    assert asked_attributes(data.records[data.index_of("red apple")]) == {}
    real = scorecard(real_sampler(data), "text", tiny_judge, data, n=12, seed=3, classifiers=nn_classifiers)
    pooled = real.results["attributes"]
    assert pooled["skin_tone"]["n"] > 0 and pooled["gender"]["n"] > 0
    for task in ("skin_tone", "gender"):   # samples that are the real renders keep everything, as the real do
        assert pooled[task]["samples"] == pooled[task]["real"] == 1.0 and pooled[task]["vs_real"] == 1.0
    assert "attributes" not in scorecard(real_sampler(data), "text", tiny_judge, data, n=4, seed=3).results
    lost = scorecard(toneless_sampler(data), "text", tiny_judge, data, n=12, seed=3, classifiers=nn_classifiers)
    a = lost.results["attributes"]
    assert a["skin_tone"]["n"] == pooled["skin_tone"]["n"] and a["skin_tone"]["samples"] == 0.0
    assert a["skin_tone"]["vs_real"] == 0.0 and a["gender"]["samples"] == 1.0
    # per split, and pooled = the splits' counts together
    splits = lost.results["splits"]
    assert sum(s["attributes"]["skin_tone"]["n"] for s in splits.values()) == a["skin_tone"]["n"]
    # the function on its own: the same figures from the same images
    split = TEXT_SPLITS[0]
    recs = [data.records[i] for i in lost.records[split]]
    direct = attribute_retention(nn_classifiers, recs, lost.images[split]["samples"], lost.images[split]["real"])
    assert direct == splits[split]["attributes"]
    with pytest.raises(ValueError, match="records for"):
        attribute_retention(nn_classifiers, recs[:2], lost.images[split]["samples"], lost.images[split]["real"])


def test_format_attributes_lists_every_split_and_the_pool(data, tiny_judge, nn_classifiers):
    from core.evaluation.scorecard import format_scorecard
    card = scorecard(toneless_sampler(data), "text", tiny_judge, data, n=6, seed=3, classifiers=nn_classifiers)
    text = "\n".join(format_scorecard(card.results))
    assert "Attribute retention" in text and "skin tone as asked" in text and "**all splits**" in text
    pooled = card.results["attributes"]["skin_tone"]
    assert f"0.000 / 1.000 (0.00, {pooled['n']})" in text
