"""How a prompt was read (core.reading), everyday captions (core.data.captions) and the everyday-prompt
score (core.evaluation.everyday): on a tiny CLIP, on the committed CLIP and judge, from the CLI."""
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.data.captions import colour_of, everyday_captions
from core.models.text_encoders import ClipTextEncoder
from core.reading import CONFIDENT_SCORE, PromptReader, nearest_prompt, read_prompt, readable_prompt, unknown_words

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"
RECORDS = [SimpleNamespace(name=n, emoji=e, keywords=()) for n, e in
           [("thumbs up", "👍"), ("red apple", "🍎"), ("grinning face", "😀"), ("cat face", "🐱"),
            ("woman dancing: dark skin tone", "💃🏿"), ("man dancing: light skin tone", "🕺🏻")]]


# with CLDR keywords, as the data set's records have them
KEYWORDED = [SimpleNamespace(name=n, emoji=e, keywords=k, skin_tone=t) for n, e, k, t in
             [("thumbs up", "👍", ("+1", "hand", "thumb", "up"), "none"),
              ("red apple", "🍎", ("apple", "fruit", "red"), "none"),
              ("grinning face", "😀", ("face", "grin"), "none"),
              ("cat face", "🐱", ("cat", "face", "pet"), "none"),
              ("man dancing", "🕺", ("dance", "man"), "none"),
              ("man dancing: light skin tone", "🕺🏻", ("dance", "man"), "light")]]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_checkpoints):
    return ClipTextEncoder.from_folder(Path(tiny_checkpoints) / "clip")


@pytest.fixture(scope="module")
def data():
    from core.data.emoji import load_dataset
    return load_dataset()


@pytest.fixture(scope="module")
def clip():
    return ClipTextEncoder.from_folder(CHECKPOINTS / "clip")


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_an_exact_name_is_read_as_that_emoji_first(tiny_encoder, record):
    reader = PromptReader(tiny_encoder, RECORDS)
    prompt = record.name.lower().replace(": ", ", ")
    reading = reader.read(prompt, k=3)
    assert reading.nearest[0].name == record.name
    assert reading.nearest[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert len(reading.nearest) == 3 and reading.unknown == []


@pytest.mark.parametrize("prompt, name", [("a cat", "cat face"), ("an apple", "red apple"), ("apples", "red apple"),
                                           ("a grinning face!", "grinning face"), ("a man dancing", "man dancing"),
                                           ("man dancing, light skin tone", "man dancing: light skin tone")])
def test_a_paraphrase_is_read_as_its_emoji_through_its_phrasings(tiny_encoder, prompt, name):
    """An untrained encoder knows nothing of meaning: the reading finds the emoji because one of its
    phrasings ("a cat" from the keyword "cat") is the prompt; a prompt with no tone reads the
    untoned emoji of a design drawn with tones, one with a tone the toned emoji."""
    reading = PromptReader(tiny_encoder, KEYWORDED).read(prompt)
    assert reading.nearest[0].name == name and reading.confident
    assert reading.nearest[0].score >= CONFIDENT_SCORE
    if "," not in prompt:   # a phrasing equals what is read (the plural as its singular, the "!" left out)
        assert reading.nearest[0].similarity == pytest.approx(1.0, abs=1e-4)
        assert reading.nearest[0].phrase == reading.read.rstrip("!").replace("apples", "an apple")
    # by the name alone, as the reader did before, a paraphrase need not find it: the phrasings did
    assert "a cat" in PromptReader(tiny_encoder, KEYWORDED).texts


def test_a_prompt_of_unknown_words_is_not_read_confidently(tiny_encoder):
    reading = PromptReader(tiny_encoder, KEYWORDED).read("a zyzzyva")   # read as "a": nothing to go by
    assert not reading.confident


def test_unknown_words_are_reported_and_known_ones_not(tiny_encoder):
    assert unknown_words(tiny_encoder, "a zyzzyva giving a thumbs up!") == ["zyzzyva", "giving"]
    reading = PromptReader(tiny_encoder, RECORDS).read("zyzzyva, red apple")
    assert reading.unknown == ["zyzzyva"] and "not understood: zyzzyva" in reading.summary()
    with pytest.raises(ValueError, match="prompt"):
        PromptReader(tiny_encoder, RECORDS).read("  ")


def test_unknown_words_become_their_singular_or_are_left_out(tiny_encoder):
    assert readable_prompt(tiny_encoder, "woman dancing, dark skin tone") == ("woman dancing, dark skin tone", None)
    text, note = readable_prompt(tiny_encoder, "zyzzyva, red apples")
    assert text == "red apple" and "'apples' read as 'apple'" in note and "'zyzzyva' left out" in note
    text, note = readable_prompt(tiny_encoder, "zyzzyva")   # nothing known: kept, and said
    assert text == "zyzzyva" and "no word" in note
    # the reading embeds what is read: an unknown word does not move it
    reader = PromptReader(tiny_encoder, RECORDS)
    assert reader.read("a zyzzyva grinning face").nearest == reader.read("a grinning face").nearest


def test_the_committed_clip_reads_everyday_prompts(clip, data):
    rocket = read_prompt(clip, "rocket", data)
    assert rocket.nearest[0].name == "rocket" and data.records[rocket.nearest[0].index].name == "rocket"
    assert "cat" in [n.name for n in read_prompt(clip, "a cat", data).nearest]
    corgi = read_prompt(clip, "a corgi in the snow", data)
    assert corgi.unknown == ["corgi"]
    assert all(not data.records[n.index].heldout for n in corgi.nearest)   # what the models were trained on


def test_everyday_captions_templates_keywords_and_colours(data):
    car, suv, banana = (data.index_of(n) for n in ("automobile", "sport utility vehicle", "banana"))
    assert colour_of(data.images[car]) == "red"
    assert colour_of(data.images[suv]) == "blue"
    assert colour_of(data.images[banana]) == "yellow"
    caps = everyday_captions(data.records[car], "red")
    assert {"an automobile", "a picture of an automobile", "automobile emoji", "car", "a car", "a red car",
            "a red automobile"} <= set(caps)
    assert "a blue sport utility vehicle" in everyday_captions(data.records[suv], "blue")
    dancer = everyday_captions(data.records[data.index_of("woman dancing: dark skin tone")], None)
    assert "a woman dancing, dark skin tone" in dancer and all("blue" not in c for c in dancer)
    shades = everyday_captions(data.records[data.index_of("smiling face with sunglasses")], None)
    assert "face with sunglasses" in shades and "smiling face sunglasses" not in shades[:3]


def test_everyday_score_counts_acceptable_emoji_among_the_nearest(data):
    from core.evaluation.everyday import acceptable_indices, load_everyday, score_everyday
    from core.evaluation.judge import Judge
    prompts = load_everyday()
    assert len(prompts) >= 40
    judge = Judge.load(CHECKPOINTS / "judge").set_reference(data)
    few = prompts[:12]

    def right(asked, seeds):   # the real render of each prompt's first acceptable emoji: always a hit
        by_prompt = {p.prompt: acceptable_indices(data, p)[0] for p in few}
        return data.images_at(32, [by_prompt[a] for a in asked])

    def poo(asked, seeds):     # the same emoji for every prompt: a hit only where it is acceptable
        return data.images_at(32, [data.index_of("pile of poo")] * len(asked))

    good = score_everyday(right, judge, data, few, seeds=(0,))
    assert good["hit_rate"] == 1.0 and good["n"] == 12
    bad = score_everyday(poo, judge, data, few + [p for p in prompts if p.prompt == "poop"], seeds=(0,))
    assert bad["per_prompt"][-1]["hits"] == [True] and bad["hit_rate"] <= 2 / 13


def test_generate_prints_how_the_prompt_was_read(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core", "generate", "--prompt", "a zyzzyva rocket", "--size", "32",
                           "--steps", "2", "--decoder-steps", "2", "--checkpoints", str(CHECKPOINTS),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "read as: 🚀 rocket" in proc.stdout and "not understood: zyzzyva (read 'a rocket')" in proc.stdout
    assert "zyzzyva' left out" in proc.stdout   # the note of core.cascade.generate
    assert "drawn as: 🚀 rocket" in proc.stdout   # the prompt reading "nearest": the prior drew the name
    typed = subprocess.run([sys.executable, "-m", "core", "generate", "--prompt", "a zyzzyva rocket", "--size", "32",
                            "--steps", "2", "--decoder-steps", "2", "--checkpoints", str(CHECKPOINTS),
                            "--prompt-reading", "as-typed", "--out", str(tmp_path / "typed")],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert typed.returncode == 0, typed.stderr
    assert "drawn as typed (--prompt-reading as-typed)" in typed.stdout and "drawn as:" not in typed.stdout


def test_everyday_captions_condition_half_the_priors_text_samples():
    """`train prior --captions everyday`: a text sample takes an everyday caption half the time, an
    emoji without any keeps its name captions; unconditional and label samples carry no text."""
    import torch

    from core.training.prior import PriorTask
    task = PriorTask.__new__(PriorTask)
    task.caption_rows, task.caption_emb = [(0, 2), (2, 1)], torch.zeros(3, 4)      # name captions: zeros
    task.everyday_rows, task.everyday_emb = [(0, 3), (3, 0)], torch.ones(3, 4)     # everyday: ones
    task.labels = torch.tensor([0, 1])
    model = SimpleNamespace(num_classes=2)
    rows = torch.tensor([0] * 2000 + [1] * 2000)
    cond = task.cond_batch(rows, torch.Generator().manual_seed(0), model)
    text, has = cond["text"][:, 0], cond["has_text"].bool()
    share = text[:2000][has[:2000]].mean()
    assert 0.4 < share < 0.6                          # emoji 0: half its text samples are everyday captions
    assert (text[2000:] == 0).all()                   # emoji 1 has none: its names only
    assert (text[~has] == 0).all()


def test_the_name_embeddings_are_kept_between_processes_per_encoder(tiny_encoder, tiny_checkpoints, tmp_path):
    fresh = PromptReader(tiny_encoder, RECORDS)
    kept = PromptReader(tiny_encoder, RECORDS, cache=tmp_path)
    files = list(tmp_path.iterdir())
    # kept in half precision: the cosine similarities agree to ~1e-3
    assert len(files) == 1 and torch.allclose(kept.embeddings, fresh.embeddings, atol=2e-3)
    assert kept.embeddings.shape[0] == len(kept.texts) > len(RECORDS)   # every phrasing of every emoji
    # read back, not recomputed: a planted file is what the next reader gets
    planted = torch.zeros_like(fresh.embeddings)
    torch.save(planted, files[0])
    assert torch.equal(PromptReader(tiny_encoder, RECORDS, cache=tmp_path).embeddings, planted)
    # another encoder's weights, or other names, get their own file
    other = ClipTextEncoder.from_folder(Path(tiny_checkpoints) / "clip")
    with torch.no_grad():
        next(other.model.parameters()).add_(1.0)
    PromptReader(other, RECORDS, cache=tmp_path)
    PromptReader(tiny_encoder, RECORDS[:3], cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3
    # a torn file is recomputed
    files[0].write_bytes(b"torn")
    assert torch.allclose(PromptReader(tiny_encoder, RECORDS, cache=tmp_path).embeddings, fresh.embeddings, atol=2e-3)


def test_the_committed_clip_reads_paraphrases_and_keeps_exact_names(clip, data):
    """Everyday phrasings (not in the evaluation's prompts) read as their emoji, confidently; an exact
    name reads as itself; a tone asked on a paraphrase is kept for the prior."""
    for prompt, name in [("a tiger", "tiger face"), ("grapes", "grapes"), ("a helicopter", "helicopter")]:
        reading = read_prompt(clip, prompt, data)
        assert reading.nearest[0].name == name and reading.confident
    for name in ["woman dancing: dark skin tone", "red apple", "flag: Japan", "grinning face with big eyes"]:
        assert read_prompt(clip, name.lower().replace(": ", ", "), data).nearest[0].name == name
    text, reading, drawn = nearest_prompt(clip, "a dancing woman with dark skin", data)
    assert text == "woman dancing, dark skin tone" and drawn.emoji == "💃🏿"
    for name in ["smiling face", "man: light skin tone", "sun behind cloud"]:   # exact names, with their nearer kin
        text, _, drawn = nearest_prompt(clip, name, data)
        assert text == name.lower().replace(": ", ", ") and drawn.name == name
    text, reading, drawn = nearest_prompt(clip, "a zyzzyva", data)   # nothing known: kept as typed
    assert text == "a zyzzyva" and drawn is None and not reading.grounded
    # read loosely (below the confidence threshold) but with a known word: still drawn as the nearest emoji,
    # a clean neighbour rather than the smear its own embedding gives the prior
    text, reading, drawn = nearest_prompt(clip, "a worm", data)
    assert reading.grounded and not reading.confident and reading.nearest[0].score < CONFIDENT_SCORE
    assert drawn is not None and text == drawn.name.lower().replace(": ", ", ") == reading.nearest[0].name.lower()


@pytest.mark.parametrize("base", ["semantic", "pixel"])
def test_the_prompt_reading_decides_what_the_base_is_conditioned_on(tiny_checkpoints, base):
    """"nearest" draws the name of the emoji the prompt is read as: the very image the name draws as
    typed; "as-typed" draws the prompt itself, another image. The prior and the pixel text base alike."""
    from core.cascade import generate
    from core.models.modelset import ModelSet
    models = ModelSet(tiny_checkpoints, "cpu")
    kw = dict(num=1, size=32, seed=3, base_model=base, **({"decoder_steps": 2} if base == "semantic" else {}))
    nearest = generate(models, prompt="a cat face", prompt_reading="nearest", **kw)
    assert nearest.parameters["read_as"]["name"] == "cat face" and nearest.parameters["prior_prompt"] == "cat face"
    assert "read as 🐱 cat face" in nearest.parameters["note"]
    by_name = generate(models, prompt="cat face", prompt_reading="as-typed", **kw)
    assert torch.equal(nearest.final, by_name.final)
    typed = generate(models, prompt="a cat face", prompt_reading="as-typed", **kw)
    assert "read_as" not in typed.parameters and typed.parameters["prompt_reading"] == "as-typed"
    assert not torch.allclose(typed.final, nearest.final)
    assert generate(models, prompt="a cat face", **kw).parameters["prompt_reading"] == "nearest"   # the default
    with pytest.raises(ValueError, match="prompt reading must be one of nearest, as-typed"):
        generate(models, prompt="a cat face", prompt_reading="closest", **kw)


def test_tones_asked_are_kept_when_the_prompt_is_read_as_its_emoji():
    """With the committed models and the default prompt reading: a tone on a design never drawn with
    one still moves the design's code (core.tone_words); a tone on a paraphrase of a toned design
    draws that design's toned name."""
    from core.cascade import generate
    from core.models.modelset import ModelSet
    models = ModelSet(CHECKPOINTS, "cpu")
    kw = dict(num=1, size=32, decoder_steps=2)
    troll = generate(models, prompt="troll, dark skin tone", **kw).parameters
    assert troll["tone_offset"] == "dark" and troll["prior_prompt"] == "troll" and troll["read_as"]["name"] == "troll"
    assert troll["tone_painted"] == "dark"   # then its skin repainted (the committed tone painter)
    dancer = generate(models, prompt="a dancing woman with dark skin", **kw).parameters
    assert dancer["prior_prompt"] == "woman dancing, dark skin tone" and "tone_offset" not in dancer
    assert dancer["read_as"]["emoji"] == "💃🏿"


def test_the_colour_words_are_kept_between_processes_per_data_set(tmp_path, monkeypatch):
    import numpy as np

    import core.data.captions as captions
    from core.reading import _colours
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    data = SimpleNamespace(images=np.stack([red, blue, red]), records=RECORDS[:3],
                           meta={"fingerprint": {"font": "a"}})
    assert _colours(data, [0, 1], tmp_path) == ["red", "blue"] == [colour_of(red), colour_of(blue)]
    # read back, not measured again
    monkeypatch.setattr(captions, "colour_of", lambda image: pytest.fail("measured again"))
    assert _colours(data, [0, 1], tmp_path) == ["red", "blue"]
    monkeypatch.undo()
    # another data set (its fingerprint) or other emoji get their own file; a torn file is measured again
    _colours(SimpleNamespace(**{**vars(data), "meta": {"fingerprint": {"font": "b"}}}), [0, 1], tmp_path)
    _colours(data, [1, 2], tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3
    for f in files:
        f.write_text("torn")
    assert _colours(data, [1, 2], tmp_path) == ["blue", "red"]
    # a data set without a fingerprint (built in memory) is measured and not kept
    assert _colours(SimpleNamespace(**{**vars(data), "meta": {}}), [0], tmp_path / "none") == ["red"]
    assert not (tmp_path / "none").exists()


def test_the_app_makes_the_prompt_reader_before_the_first_prompt(tiny_checkpoints):
    from demos.models import Models
    models = Models.load(tiny_checkpoints, "cpu")
    encoder = models.set.get(models.set.get("prior").config.text_encoder)
    thread = models.warm_prompt_reader()
    thread.join(timeout=600)
    assert not thread.is_alive()
    reader = encoder._prompt_reader   # made by the warm-up: the first reading uses it
    assert read_prompt(encoder, "a cat").nearest and encoder._prompt_reader is reader
    # no prior, no warm-up
    assert Models(models.set, {"prior": "missing"}, [n for n in models.names if n != "prior"]).warm_prompt_reader() \
        is None


def test_a_loose_reading_is_said_so_under_the_result_and_on_the_command_line():
    from core.cli.generate import drawn_as
    from demos.text_to_image import drawn_markdown
    read = {"prompt": "a worm", "prompt_reading": "nearest", "prior_prompt": "office building",
            "read_as": {"emoji": "🏢", "name": "office building", "score": 0.8, "confident": False}}
    assert "a loose reading" in drawn_as(read) and "a loose reading" in drawn_markdown(read)
    sure = {**read, "read_as": {**read["read_as"], "score": 1.2, "confident": True}}
    assert "loose" not in drawn_as(sure) and "loose" not in drawn_markdown(sure)
    typed = {"prompt": "a zyzzyva", "prompt_reading": "nearest"}
    assert "no word" in drawn_as(typed) and "no word" in drawn_markdown(typed)
