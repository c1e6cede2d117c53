"""core.models.clip_text against open_clip: the BPE tokenizer gives open_clip's ids, and
the text tower loaded without open_clip gives the embeddings of open_clip's `CLIP` (tiny seeded
model and the committed checkpoint)."""
from pathlib import Path

import pytest
import torch
from open_clip.model import CLIPTextCfg
from open_clip.tokenizer import SimpleTokenizer

from core.models.clip_model import ClipConfig, build_clip, build_vocab, load_clip_folder, save_clip_folder
from core.models.clip_text import CompactTokenizer, TextTower, bpe_tokenizer, encode_text_tokens, load_text_tower
from core.models.text_encoders import ClipTextEncoder

ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
PROMPTS = ["red apple", "", "woman dancing: dark skin tone", "Thumbs UP &amp; café 👍", "ｆｕｌｌ-width ½",
           " ".join(["very"] * 40) + " long prompt", "unseenword xylophone"]


# text on both sides of the plain-ASCII path (no ftfy, the standard library's re) and the other one
TRICKY = ["&amp; &lt;3 &#x1F600;", "a\ttab\nnewline\r\nthing", "<start_of_text>hi<end_of_text>", "don't we'll I'd",
          "cafÃ© mojibake", "“curly” quotes – dash", "ﬁne ligature", "Straße ΣΙΣΥΦΟΣ", "数字 ١٢٣ ½ Ⅻ", "K-pop ſ",
          "x" * 200, "   spaced    out   ", "under_score 3.14 #tag @you", "\x1b[31mred\x1b[0m", "emoji 👍🏽 + text"]


def test_tokenizer_is_open_clips():
    from core.data.emoji import load_dataset
    ours, theirs = bpe_tokenizer(), SimpleTokenizer()
    assert "open_clip" not in type(ours).__module__
    assert ours.encoder == theirs.encoder and ours.vocab_size == theirs.vocab_size
    assert {tuple(k.split(" ")): v for k, v in ours.ranks.items()} == theirs.bpe_ranks
    assert (ours.sot_token_id, ours.eot_token_id) == (theirs.sot_token_id, theirs.eot_token_id)
    names = [r.name for r in load_dataset().records]   # every emoji name: the captions' words
    texts = PROMPTS + TRICKY + names + [n.lower().replace(": ", ", ") for n in names]
    assert [ours.encode(t) for t in texts] == [theirs.encode(t) for t in texts]
    assert torch.equal(ours(texts, context_length=32), theirs(texts, context_length=32))
    for text in PROMPTS + TRICKY:
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text)), text


def encodings(model, tokenizer):
    ids, _ = tokenizer(PROMPTS)
    with torch.inference_mode():
        return encode_text_tokens(model, ids)


def assert_same_encoder(folder):
    tower, vocab, context_length = load_text_tower(folder)
    model, config = load_clip_folder(folder)
    model.requires_grad_(False)   # torch's fast attention path, as the tower's (frozen) weights take
    tokenizer = CompactTokenizer(vocab, context_length)
    assert isinstance(tower, TextTower) and vocab == config.vocab
    ours, theirs = encodings(tower, tokenizer), encodings(model, tokenizer)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), (a - b).abs().max()


def test_tiny_text_tower_matches_open_clip(tmp_path):
    from tests.tiny import tiny_clip
    config, model = tiny_clip(seed=3)
    save_clip_folder(tmp_path / "clip", model, config, extra_config={"kind": "clip"})
    assert_same_encoder(tmp_path / "clip")
    save_clip_folder(tmp_path / "text", model, config, text_only=True)   # a conditioning-only checkpoint
    assert_same_encoder(tmp_path / "text")


def test_committed_text_tower_matches_open_clip():
    if not (ROOT / "clip" / "config.json").is_file():
        pytest.skip("no committed clip")
    assert_same_encoder(ROOT / "clip")


def test_encoder_uses_the_tower_and_falls_back_to_open_clip(tmp_path):
    from tests.tiny import TINY_CAPTIONS, tiny_clip
    config, model = tiny_clip()
    save_clip_folder(tmp_path / "clip", model, config)
    assert isinstance(ClipTextEncoder.from_folder(tmp_path / "clip").model, TextTower)
    torch.manual_seed(0)
    odd = ClipConfig(vocab=build_vocab(TINY_CAPTIONS), embed_dim=16,
                     text=CLIPTextCfg(context_length=16, width=16, heads=2, layers=1, ls_init_value=0.5))
    save_clip_folder(tmp_path / "odd", build_clip(odd), odd)   # LayerScale: not in core.models.clip_text
    encoder = ClipTextEncoder.from_folder(tmp_path / "odd")
    assert type(encoder.model).__name__ == "CLIP"
    assert encoder.encode(["red apple"]).tokens.shape == (1, 16, 16)


def test_broken_folders_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_text_tower(tmp_path)
    from tests.tiny import tiny_clip
    config, model = tiny_clip()
    save_clip_folder(tmp_path / "clip", model, config)
    (tmp_path / "clip" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_text_tower(tmp_path / "clip")
