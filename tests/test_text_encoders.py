"""Text encoders on tiny models built here: the compact-vocab open_clip CLIP and a T5 with a
sentencepiece model trained in the test. Nothing is downloaded."""
from __future__ import annotations

import copy
import json
import os
import shutil

import pytest
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from core.models.clip_model import (
    PAD_ID,
    UNK_ID,
    ClipConfig,
    ClipEmbedder,
    CompactTokenizer,
    bpe_tokenizer,
    build_clip,
    build_vocab,
    clip_loss,
    load_clip_folder,
    normalize_images,
    save_clip_folder,
)
from core.models.text_encoders import (
    MAX_PROMPT_CHARS,
    ClipTextEncoder,
    T5TextEncoder,
    TextEmbeddings,
    fit_prompts,
    load_t5_tokenizer,
    load_text_encoder,
)

CAPTIONS = [
    "grinning face", "red apple", "woman dancing: dark skin tone", "cat face",
    "thumbs up: light skin tone", "man raising hand", "green heart", "rocket",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. With 2 threads on 2 busy shared cores, OpenMP
    spin-waiting made the training test 60x slower (68 s instead of 1 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_clip_config(vocab) -> ClipConfig:
    return ClipConfig(
        vocab=vocab, embed_dim=32, image_size=32,
        vision=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8),
        text=CLIPTextCfg(context_length=16, width=32, heads=2, layers=2),
    )


@pytest.fixture(scope="module")
def clip_parts():
    vocab = build_vocab(CAPTIONS)
    cfg = tiny_clip_config(vocab)
    torch.manual_seed(0)
    model = build_clip(cfg).eval()
    return cfg, model, CompactTokenizer.from_config(cfg)


# ----------------------------------------------------------------------------- CLIP tokenizer

def test_vocab_is_compact_and_ends_with_sot_eot():
    bpe = bpe_tokenizer()
    vocab = build_vocab(CAPTIONS)
    assert vocab[-2:] == [bpe.sot_token_id, bpe.eot_token_id]
    assert vocab == sorted(set(vocab))
    words = {i for c in CAPTIONS for i in bpe.encode(c)}
    assert set(vocab[:-2]) == words
    cfg = tiny_clip_config(vocab)
    assert cfg.vocab_size == len(vocab) + 2 and cfg.text.vocab_size == cfg.vocab_size
    assert cfg.text.eos_id == cfg.vocab_size - 1 and cfg.text.pool_type == "argmax"
    # dataclasses.replace re-derives the text config from the new vocab (core.training.clip does this)
    from dataclasses import replace
    tiny = replace(ClipConfig.tiny(), vocab=vocab)
    assert tiny.text.vocab_size == len(vocab) + 2 and ClipConfig.tiny().text.vocab_size == 2
    assert (CompactTokenizer(tiny)("red apple")[0].tolist()
            == CompactTokenizer.from_config(tiny)("red apple")[0].tolist())
    assert ClipConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        ClipConfig(vocab=vocab[:-1])          # no eot at the end
    with pytest.raises(ValueError):
        ClipConfig(vocab=[5, 3] + vocab[-2:])  # not sorted


def test_tokenizer_round_trip(clip_parts):
    cfg, _, tok = clip_parts
    bpe = bpe_tokenizer()
    red, apple = bpe.encode("red apple")
    ids, mask = tok(["red apple", "red zebra", "", "RED   Apple"])
    assert ids.shape == mask.shape == (4, 16) and ids.dtype == torch.long and mask.dtype == torch.bool
    compact = {b: i + 2 for i, b in enumerate(cfg.vocab)}
    assert ids[0, :4].tolist() == [tok.sot_id, compact[red], compact[apple], tok.eot_id]
    assert (ids[0, 4:] == PAD_ID).all()
    assert mask.sum(1).tolist()[0] == 4 and mask[0, :4].all() and not mask[0, 4:].any()
    # a word never seen in the captions -> <unk>, known words keep their ids
    assert ids[1, 1] == compact[red] and (ids[1, 2:mask[1].sum() - 1] == UNK_ID).all()
    # empty prompt = [sot, eot]
    assert ids[2, :2].tolist() == [tok.sot_id, tok.eot_id] and mask[2].sum() == 2
    # open_clip cleans/lower-cases
    assert torch.equal(ids[3], ids[0])
    # eot is the largest id of every row (open_clip's argmax pooling finds it)
    assert (ids.argmax(1) == mask.sum(1) - 1).all()
    assert tok.decode(ids[0]) == "red apple"
    assert tok.decode(ids[1]).startswith("red <unk>")


def test_tokenizer_truncates_to_context_length(clip_parts):
    _, _, tok = clip_parts
    ids, mask = tok(["green heart " * 30, "cat"])
    assert ids.shape == (2, 16)
    assert mask[0].all() and ids[0, -1] == tok.eot_id and ids[0, 0] == tok.sot_id
    assert ids[0].argmax() == 15


@pytest.mark.parametrize("bad", [None, [None], ["ok", 3], [b"bytes"], [], 7])
def test_bad_prompts_raise(clip_parts, bad):
    _, model, tok = clip_parts
    with pytest.raises(ValueError):
        ClipTextEncoder(model, tok).encode(bad)


# ----------------------------------------------------------------------------- prompt length

@pytest.mark.parametrize("prompt", ["red apple", "  cat face  ", ""])
def test_a_prompt_that_fits_is_read_whole(clip_parts, prompt):
    _, model, tok = clip_parts
    enc = ClipTextEncoder(model, tok)
    assert enc.fit(prompt) == prompt.strip()
    assert fit_prompts(enc, prompt, "") == (prompt.strip(), "", None)


def test_a_long_prompt_is_cut_after_a_word_to_the_context(clip_parts):
    _, model, tok = clip_parts
    enc = ClipTextEncoder(model, tok)
    prompt = "green heart and a red apple " * 10
    used = enc.fit(prompt)
    assert prompt.startswith(used) and prompt[len(used)] == " "     # a whole-word start
    assert enc.count_tokens(used) <= enc.max_length < enc.count_tokens(prompt[:len(used) + 6])
    # what is stored reproduces the image: the encoder sees exactly the same tokens
    torch.testing.assert_close(enc.encode(used).tokens[0, :enc.count_tokens(used)],
                               enc.encode(prompt).tokens[0, :enc.count_tokens(used)])
    _, negative, note = fit_prompts(enc, "cat", prompt)
    assert negative == used and note.startswith(f"the negative prompt was cut to the {enc.max_length} tokens")


def test_a_huge_prompt_costs_no_more_than_a_long_one(clip_parts):
    _, model, tok = clip_parts
    enc = ClipTextEncoder(model, tok)
    calls = []
    count = enc.count_tokens
    enc.count_tokens = lambda text: calls.append(len(text)) or count(text)
    used = enc.fit("cat " * 250_000)            # 1 MB
    assert used == ("cat " * 14).strip() and enc.count_tokens(used) == 16
    assert max(calls) <= MAX_PROMPT_CHARS and len(calls) < 20
    assert enc.fit("x" * 100_000) == "x" * len(enc.fit("x" * 100_000))   # one endless word: cut inside it
    assert 0 < len(enc.fit("x" * 100_000)) < 100


# ----------------------------------------------------------------------------- CLIP encoder

def test_clip_encode_shapes_and_consistency(clip_parts):
    cfg, model, tok = clip_parts
    enc = ClipTextEncoder(model, tok)
    assert (enc.width, enc.pooled_width, enc.max_length) == (32, 32, 16)
    emb = enc.encode(["red apple", "", "cat face"])
    assert isinstance(emb, TextEmbeddings)
    assert emb.tokens.shape == (3, 16, 32) and emb.tokens.dtype == torch.float32
    assert emb.mask.shape == (3, 16) and emb.mask.sum(1).tolist() == [4, 2, 4]
    assert emb.pooled.shape == (3, 32)
    ids, _ = tok(["red apple", "", "cat face"])
    with torch.no_grad():
        ref = model.encode_text(ids)  # open_clip's own pooled + projected text features
    torch.testing.assert_close(emb.pooled, ref)
    # pooled = projected state at eot
    eot = emb.mask.sum(1) - 1
    torch.testing.assert_close(emb.tokens[torch.arange(3), eot] @ model.text_projection, emb.pooled)
    # causal: real tokens do not depend on the rest of the batch; a single string is a batch of one
    one = enc.encode("red apple")
    torch.testing.assert_close(one.tokens[0, :4], emb.tokens[0, :4])
    assert len(one) == 1 and len(TextEmbeddings.cat([emb, one])) == 4 and len(emb.repeat(2)) == 6


def test_clip_loss_matches_open_clip(clip_parts):
    from open_clip.loss import ClipLoss

    cfg, model, tok = clip_parts
    torch.manual_seed(1)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    ids, _ = tok(CAPTIONS[:4])
    with torch.no_grad():
        ours = clip_loss(model, images, ids)
        img, txt, scale = model(normalize_images(images), ids)
        ref = ClipLoss()(img, txt, scale)
        assert torch.allclose(ours, ref, atol=1e-5)
        dup_ids, _ = tok(["red apple", "red apple", "cat face", "rocket"])
        assert torch.isfinite(clip_loss(model, images, dup_ids))
    # image normalisation: [-1, 1] -> (x01 - mean) / std; white maps to (1 - mean) / std
    white = normalize_images(torch.ones(1, 3, 8, 8), 4)
    assert white.shape == (1, 3, 4, 4)
    torch.testing.assert_close(white[0, :, 0, 0], (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073]))
                               / torch.tensor([0.26862954, 0.26130258, 0.27577711]))


def test_clip_training_lowers_loss_and_scores_matches():
    vocab = build_vocab(CAPTIONS)
    cfg = tiny_clip_config(vocab)
    torch.manual_seed(0)
    model = build_clip(cfg)
    tok = CompactTokenizer.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    # 8 distinct images: a coloured square at a different place on a white background
    images = torch.ones(8, 3, 32, 32)
    for i in range(8):
        y, x = divmod(i, 4)
        images[i, :, 4 + 14 * y: 14 + 14 * y, 2 + 7 * x: 8 + 7 * x] = torch.rand(3, 1, 1, generator=g) * 2 - 1
    ids, _ = tok(CAPTIONS)
    # warmup matters: without it (lr 3e-3) this tiny CLIP collapses to chance (loss ln 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    losses = []
    for _ in range(60):
        loss = clip_loss(model, images, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = clip_loss(model, images, ids).item()
    chance = torch.log(torch.tensor(8.0)).item()
    assert losses[0] > chance - 0.3  # an untrained model is at (or, from its init, above) chance
    assert final < 0.15 * chance, (losses[0], final)
    emb = ClipEmbedder(model, tok)
    sims = emb.image_embeddings(images) @ emb.text_embeddings(CAPTIONS).T
    assert (sims.argmax(1) == torch.arange(8)).all()  # every image retrieves its caption
    matched = emb.clip_score(images, CAPTIONS)
    shuffled = emb.clip_score(images, CAPTIONS[1:] + CAPTIONS[:1])
    assert matched.shape == (8,) and (matched >= 0).all() and (matched <= 100).all()
    assert matched.mean() > shuffled.mean() + 10


def test_clip_save_load_identical(clip_parts, tmp_path):
    cfg, model, tok = clip_parts
    prompts = ["red apple", "", "woman dancing: dark skin tone"]
    # frozen, as a loaded encoder is: torch's fused attention then serves both (equal to the bit)
    ref = ClipTextEncoder(copy.deepcopy(model).requires_grad_(False), tok).encode(prompts)

    save_clip_folder(tmp_path / "fp32", model, cfg, dtype=torch.float32)
    enc = ClipTextEncoder.from_folder(tmp_path / "fp32")
    got = enc.encode(prompts)
    assert torch.equal(got.tokens, ref.tokens) and torch.equal(got.pooled, ref.pooled)
    assert torch.equal(got.mask, ref.mask)
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["clip"]["vocab"] == cfg.vocab

    # default fp16 file: identical to the model with fp16-rounded weights, close to the original
    save_clip_folder(tmp_path / "fp16", model, cfg, extra_config={"kind": "clip"})
    rounded = build_clip(cfg)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    rounded.eval().requires_grad_(False)
    half = ClipTextEncoder.from_folder(tmp_path / "fp16").encode(prompts)
    exp = ClipTextEncoder(rounded, tok).encode(prompts)
    assert torch.equal(half.tokens, exp.tokens) and torch.equal(half.pooled, exp.pooled)
    torch.testing.assert_close(half.pooled, ref.pooled, atol=1e-2, rtol=1e-2)
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < \
        (tmp_path / "fp32" / "model.safetensors").stat().st_size * 0.6

    # text tower only: same text embeddings, smaller file, no image embeddings
    save_clip_folder(tmp_path / "text", model, cfg, text_only=True)
    text = ClipTextEncoder.from_folder(tmp_path / "text")
    assert text.model.visual is None
    got = text.encode(prompts)
    assert torch.equal(got.tokens, half.tokens) and torch.equal(got.pooled, half.pooled)
    assert (tmp_path / "text" / "model.safetensors").stat().st_size < \
        (tmp_path / "fp16" / "model.safetensors").stat().st_size
    with pytest.raises(ValueError, match="text tower"):
        ClipEmbedder.from_folder(tmp_path / "text")

    # the evaluation embedder loads the same folder; images of any size are resized
    emb = ClipEmbedder.from_folder(tmp_path / "fp32")
    img = torch.rand(2, 3, 48, 40) * 2 - 1
    e = emb.image_embeddings(img)
    assert e.shape == (2, 32)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    assert isinstance(load_text_encoder(tmp_path / "fp32"), ClipTextEncoder)


def test_clip_folder_errors(clip_parts, tmp_path):
    cfg, model, _ = clip_parts
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        ClipTextEncoder.from_folder(missing)
    save_clip_folder(tmp_path / "ck", model, cfg)
    os.remove(tmp_path / "ck" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_clip_folder(tmp_path / "ck")
    save_clip_folder(tmp_path / "ck2", model, cfg)
    (tmp_path / "ck2" / "config.json").write_text(json.dumps({"unet": {}}))
    with pytest.raises(ValueError, match="'clip'"):
        load_clip_folder(tmp_path / "ck2")
    other = tiny_clip_config(build_vocab(["something else entirely"]))
    (tmp_path / "ck2" / "config.json").write_text(json.dumps({"clip": other.to_dict()}))
    with pytest.raises(ValueError, match="do not match"):
        load_clip_folder(tmp_path / "ck2")


# ----------------------------------------------------------------------------- T5

T5_SENTENCES = [
    "a grinning face with big eyes", "woman dancing: medium-dark skin tone", "red apple on a table",
    "man raising hand", "cat face with tears of joy", "thumbs up: light skin tone", "green heart",
    "rocket flying to the moon", "person lying in bed", "keycap digit seven", "smiling face with halo",
    "flag of a country", "woman and man holding hands", "dog face", "sun behind small cloud",
]
PROMPTS = ["red apple", "", "woman dancing: dark skin tone", "a dog and a cat face"]


@pytest.fixture(scope="module")
def t5_dirs(tmp_path_factory):
    """A tiny T5 saved three ways: plain folder, diffusers layout, IF-like tokenizer (spiece only)."""
    import sentencepiece as spm
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    root = tmp_path_factory.mktemp("t5")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(T5_SENTENCES * 4), model_prefix=str(root / "sp"), vocab_size=100,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(root / "sp.model"))
    # transformers 5 ignores T5Tokenizer(vocab_file=...) unless protobuf is installed (it silently
    # builds a 4-piece vocabulary), so the Unigram vocabulary is passed directly.
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    assert len(tok) == sp.get_piece_size() > 50
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5EncoderModel(cfg).eval()
    plain = root / "plain"
    model.save_pretrained(plain)
    tok.save_pretrained(plain)
    diffusers = root / "pipe"
    model.save_pretrained(diffusers / "text_encoder")
    tok.save_pretrained(diffusers / "tokenizer")
    (diffusers / "model_index.json").write_text(json.dumps({"_class_name": "IFPipeline"}))
    spiece = root / "spiece_only"
    model.save_pretrained(spiece / "text_encoder")
    (spiece / "tokenizer").mkdir()
    shutil.copy(root / "sp.model", spiece / "tokenizer" / "spiece.model")
    (spiece / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    return {"plain": plain, "diffusers": diffusers, "spiece": spiece, "model": model, "sp": sp}


def test_t5_plain_folder(t5_dirs):
    enc = T5TextEncoder.from_pretrained(t5_dirs["plain"], max_length=12)
    assert (enc.width, enc.pooled_width, enc.max_length) == (32, 32, 12)
    emb = enc.encode(PROMPTS)
    assert emb.tokens.shape == (4, 12, 32) and emb.mask.shape == (4, 12) and emb.pooled.shape == (4, 32)
    assert emb.mask.dtype == torch.bool and emb.tokens.dtype == torch.float32
    sp = t5_dirs["sp"]
    for i, p in enumerate(PROMPTS):
        n = min(len(sp.encode(p)) + 1, 12)  # pieces + </s>, cut at max_length
        assert emb.mask[i].sum() == n and emb.mask[i, :n].all()
    assert emb.mask[1].sum() == 1  # '' -> just </s>: the unconditional embedding
    ids, mask = enc.tokenize(PROMPTS)
    with torch.no_grad():
        ref = t5_dirs["model"](input_ids=ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(emb.tokens, ref)
    for i in range(4):
        torch.testing.assert_close(emb.pooled[i], ref[i][mask[i]].mean(0))
    long = enc.encode(["green heart " * 20])
    assert long.mask.all() and long.tokens.shape == (1, 12, 32)
    used = enc.fit("green heart " * 20)
    assert ("green heart " * 20).startswith(used) and enc.count_tokens(used) <= 12 < enc.count_tokens(used + " green")
    for bad in (None, [None], ["a", 1.5], []):
        with pytest.raises(ValueError):
            enc.encode(bad)


def test_t5_diffusers_layout_and_spiece_only_tokenizer(t5_dirs):
    plain = T5TextEncoder.from_pretrained(t5_dirs["plain"]).encode(PROMPTS)
    pipe = T5TextEncoder.from_pretrained(t5_dirs["diffusers"]).encode(PROMPTS)
    assert plain.tokens.shape == (4, 77, 32)
    assert torch.equal(plain.tokens, pipe.tokens) and torch.equal(plain.mask, pipe.mask)
    # tokenizer/ holding only spiece.model (as DeepFloyd IF ships it)
    enc = T5TextEncoder.from_pretrained(t5_dirs["spiece"])
    sp = t5_dirs["sp"]
    ids, mask = enc.tokenize(PROMPTS)
    for i, p in enumerate(PROMPTS):
        assert ids[i][mask[i]].tolist() == sp.encode(p) + [1]
    assert torch.equal(enc.encode(PROMPTS).tokens, plain.tokens)
    assert isinstance(load_text_encoder(t5_dirs["diffusers"]), T5TextEncoder)
    assert len(load_t5_tokenizer(str(t5_dirs["spiece"] / "tokenizer"))) == sp.get_piece_size()


def _hub_cache(cache, repo_id: str, src, commit: str):
    org, name = repo_id.split("/")
    repo = cache / f"models--{org}--{name}"
    shutil.copytree(src, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_t5_from_hub_cache_offline(t5_dirs, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    _hub_cache(cache, "tiny-org/tiny-if", t5_dirs["diffusers"], "a" * 40)
    _hub_cache(cache, "tiny-org/tiny-t5", t5_dirs["plain"], "b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = T5TextEncoder.from_pretrained(t5_dirs["plain"]).encode(PROMPTS)
    for repo in ("tiny-org/tiny-if", "tiny-org/tiny-t5"):
        got = T5TextEncoder.from_pretrained(repo).encode(PROMPTS)
        assert torch.equal(got.tokens, ref.tokens)
    with pytest.raises(FileNotFoundError, match="tiny-org/missing"):
        T5TextEncoder.from_pretrained("tiny-org/missing")


def test_t5_broken_folders(t5_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        T5TextEncoder.from_pretrained(str(tmp_path / "no_such_dir"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        T5TextEncoder.from_pretrained(empty)
    noweights = tmp_path / "noweights"
    shutil.copytree(t5_dirs["plain"], noweights)
    os.remove(noweights / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="weights"):
        T5TextEncoder.from_pretrained(noweights)
    notok = tmp_path / "notok"
    shutil.copytree(t5_dirs["plain"], notok)
    for f in notok.iterdir():
        if f.name.startswith("tokenizer"):
            f.unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        T5TextEncoder.from_pretrained(notok)
