"""The text side of the project's CLIP (see `core.models.clip_model`) without importing open_clip: its
BPE tokenizer, the compact-vocabulary tokenizer, and the text tower with open_clip's own
state-dict keys and arithmetic, for conditioning the text base.

Why: `import open_clip` pulls in torchvision, transformers and torch._dynamo, seconds on a CPU,
while conditioning needs only a 3-layer text transformer. `core.models.clip_model` (training, the image
tower, evaluation) keeps using open_clip's `CLIP`; `load_text_tower` builds the same text tower
from the same folder (tests/test_text_encoders.py checks both give the same embeddings), and
`encode_text_tokens` runs either.

The BPE tokenizer (`BPETokenizer`) is open_clip's `SimpleTokenizer` reimplemented (CLIP's
algorithm, MIT licence) on open_clip's own merges file, so that it loads without the package and
without ftfy for plain text.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

PAD_ID = 0
UNK_ID = 1
_FIRST_WORD_ID = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _merges_path() -> str:
    """open_clip's BPE merges (bpe_simple_vocab_16e6.txt.gz), found without importing the package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is not installed: its BPE merges file is needed to tokenize prompts")
    return os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map of the 256 bytes to printable unicode characters (none of them
    whitespace), so BPE works on strings."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class BPETokenizer:
    """open_clip's `SimpleTokenizer` (CLIP's BPE, "lower" cleaning), the same ids for every text,
    built in about half its time: open_clip's module builds a tokenizer at import and imports ftfy
    (0.1-0.3 s on a CPU); here the merges are read once and ftfy and `regex` are imported only for
    text that needs them. Printable ASCII without "&" is left unchanged by ftfy.fix_text and
    html.unescape, and for ASCII the pattern's \\p{L} / \\p{N} are [a-z] / [0-9], so such text takes the
    standard library's `re`. tests/test_clip_text.py checks the ids, tables and decoding against
    open_clip's."""

    SPECIAL = ("<start_of_text>", "<end_of_text>")

    def __init__(self, path: str | None = None):
        import gzip
        with gzip.open(path or _merges_path()) as f:
            lines = f.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        self.byte_encoder = _bytes_to_unicode()
        chars = list(self.byte_encoder.values())
        vocab = chars + [c + "</w>" for c in chars] + [line.replace(" ", "") for line in lines] + list(self.SPECIAL)
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(lines, range(len(lines))))   # "a b" -> rank: symbols hold no spaces
        self.cache = {t: t for t in self.SPECIAL}
        self.vocab_size = len(self.encoder)
        self.sot_token_id, self.eot_token_id = (self.encoder[t] for t in self.SPECIAL)
        self.all_special_ids = [self.sot_token_id, self.eot_token_id]
        special = "|".join(self.SPECIAL)
        self._ascii_pattern = re.compile(special + r"""|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""",
                                         re.IGNORECASE)
        self._pattern = None   # the unicode one, with `regex`, on first use
        self._decoder = None

    def _clean(self, text: str) -> str:
        """open_clip's "lower" cleaning: ftfy.fix_text, html.unescape twice, whitespace, lower case."""
        if not (text.isascii() and text.isprintable() and "&" not in text):
            import html

            import ftfy
            text = html.unescape(html.unescape(ftfy.fix_text(text)))
        return " ".join(text.strip().split()).lower()

    def _words(self, text: str) -> list[str]:
        if text.isascii():
            return self._ascii_pattern.findall(text)
        if self._pattern is None:
            import regex
            self._pattern = regex.compile("|".join(self.SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                          r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
        return self._pattern.findall(text)

    def bpe(self, token: str) -> str:
        """The BPE symbols of one word (in byte-unicode characters), space-separated (CLIP's
        algorithm: merge the lowest-ranked adjacent pair until none is in the merges)."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = set(zip(word, word[1:]))
        if not pairs:
            return token + "</w>"
        inf = float("inf")
        while True:
            first, second = min(pairs, key=lambda pair: self.ranks.get(f"{pair[0]} {pair[1]}", inf))
            if f"{first} {second}" not in self.ranks:
                break
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:]))
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        ids = []
        for token in self._words(self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids) -> str:
        if self._decoder is None:
            self._decoder = {v: k for k, v in self.encoder.items()}
            self._byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        text = "".join(self._decoder[int(i)] for i in ids)
        return bytearray(self._byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> Tensor:
        """[B, context_length] long: sot, the text's ids, eot, zeros; a longer text is cut with eot last."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_token_id
            out[i, :len(ids)] = torch.tensor(ids)
        return out


@functools.lru_cache(maxsize=1)
def bpe_tokenizer() -> BPETokenizer:
    """CLIP's BPE tokenizer, as open_clip's `SimpleTokenizer` (loaded once)."""
    return BPETokenizer()


def check_vocab(vocab: Sequence[int]) -> None:
    """A compact vocab (`core.models.clip_model.build_vocab`): strictly increasing BPE ids ending with
    open_clip's sot and eot ids."""
    if not vocab:
        return  # an empty config placeholder; build_vocab always gives sot/eot
    bpe = bpe_tokenizer()
    if list(vocab[-2:]) != [bpe.sot_token_id, bpe.eot_token_id]:
        raise ValueError("CLIP vocab must end with open_clip's sot and eot ids "
                         f"({bpe.sot_token_id}, {bpe.eot_token_id}); use build_vocab()")
    if any(b <= a for a, b in zip(vocab, vocab[1:])):
        raise ValueError("CLIP vocab must be strictly increasing BPE ids; use build_vocab()")
    if vocab[0] < 0 or vocab[-1] >= bpe.vocab_size:
        raise ValueError(f"CLIP vocab ids must lie in [0, {bpe.vocab_size})")


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """A list of prompt strings ('' is the unconditional prompt); anything else is a ValueError."""
    if isinstance(prompts, str):
        return [prompts]
    if prompts is None or not isinstance(prompts, (list, tuple)):
        raise ValueError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is an empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompt {i} is {type(p).__name__}, not a string ('' is the unconditional prompt)")
    return list(prompts)


class CompactTokenizer:
    """open_clip's `SimpleTokenizer` followed by the BPE-id -> compact-id map.

    `__call__(prompts)` returns ``(ids [B, context_length] long, mask [B, context_length] bool)``:
    ids are compact ids ``[sot, w1, ..., wn, eot, pad, pad, ...]``, unknown BPE ids become
    `UNK_ID`; mask is True on the real tokens including sot and eot. Longer prompts are cut
    to context_length with eot as the last token (as open_clip does).
    """

    def __init__(self, vocab, context_length: int = 32):
        if hasattr(vocab, "vocab") and hasattr(vocab, "context_length"):  # a ClipConfig
            vocab, context_length = vocab.vocab, vocab.context_length
        vocab = [int(i) for i in vocab]
        if not vocab:
            raise ValueError("CompactTokenizer needs a non-empty vocab (build_vocab(captions))")
        check_vocab(vocab)
        if context_length < 2:
            raise ValueError("context_length must be at least 2 (sot and eot)")
        self.bpe = bpe_tokenizer()
        self.vocab = vocab
        self.context_length = int(context_length)
        self.vocab_size = len(vocab) + _FIRST_WORD_ID
        lut = torch.full((self.bpe.vocab_size,), UNK_ID, dtype=torch.long)
        lut[torch.tensor(vocab, dtype=torch.long)] = torch.arange(len(vocab)) + _FIRST_WORD_ID
        self._lut = lut
        self.sot_id = int(lut[self.bpe.sot_token_id])
        self.eot_id = int(lut[self.bpe.eot_token_id])
        self.pad_id = PAD_ID
        self.unk_id = UNK_ID

    @classmethod
    def from_config(cls, config) -> CompactTokenizer:
        return cls(config.vocab, config.context_length)

    def __call__(self, prompts: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        prompts = check_prompts(prompts)
        bpe_ids = self.bpe(prompts, context_length=self.context_length)  # [B, L], eot once per row
        positions = torch.arange(self.context_length)
        eot_pos = (bpe_ids == self.bpe.eot_token_id).long().argmax(dim=1, keepdim=True)
        mask = positions[None, :] <= eot_pos
        ids = self._lut[bpe_ids]
        ids[~mask] = PAD_ID
        return ids, mask

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Text of one row of compact ids (pad dropped, unk shown as '<unk>')."""
        out, run = [], []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i in (PAD_ID, self.sot_id, self.eot_id) or i == UNK_ID:
                if run:
                    out.append(self.bpe.decode(run).strip())
                    run = []
                if i == UNK_ID:
                    out.append("<unk>")
                continue
            run.append(self.vocab[i - _FIRST_WORD_ID])
        if run:
            out.append(self.bpe.decode(run).strip())
        return " ".join(out)


# ---- the text tower ------------------------------------------------------------------------------
class ResidualAttentionBlock(nn.Module):
    """open_clip's default text block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (GPT-2 style
    pre-norm, Radford et al. 2019), with torch's MultiheadAttention as open_clip uses it."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        mask = attn_mask.to(x.dtype) if attn_mask is not None else None
        h = self.ln_1(x)  # one tensor as query, key and value: torch's self-attention path, as open_clip
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)])

    def get_cast_dtype(self) -> torch.dtype:
        return self.resblocks[0].mlp.c_fc.weight.dtype

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


# Text-config values this tower implements (open_clip's defaults); any other value is not covered.
_TEXT_DEFAULTS = {"ls_init_value": None, "embed_cls": False, "final_ln_after_pool": False, "act_kwargs": None,
                  "norm_kwargs": None, "block_type": None, "qk_norm": False, "scaled_cosine_attn": False,
                  "scale_heads": False, "scale_attn_inner": False, "scale_attn": False, "scale_fc": False,
                  "hf_model_name": None, "proj_bias": False, "proj_type": "linear", "no_causal_mask": False}


class TextTower(nn.Module):
    """The text half of `open_clip.model.CLIP`, with its attribute and state-dict names."""

    def __init__(self, text: dict, vocab_size: int, embed_dim: int):
        super().__init__()
        for key, value in _TEXT_DEFAULTS.items():
            if text.get(key, value) != value and not (key == "block_type" and text.get(key) == "default"):
                raise NotImplementedError(
                    f"core.models.clip_text does not implement the text option {key}={text[key]!r}")
        width, self.context_length, self.vocab_size = int(text["width"]), int(text["context_length"]), vocab_size
        self.transformer = Transformer(width, int(text["layers"]), int(text["heads"]),
                                       float(text.get("mlp_ratio", 4.0)))
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.text_pool_type = "argmax"
        self.text_eos_id = vocab_size - 1
        self.visual = None  # no image tower (as a text-only open_clip checkpoint loads)
        causal = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)


def pool_tokens(x: Tensor, ids: Tensor, pool_type: str, eos_id: int | None = None) -> Tensor:
    """open_clip's `text_global_pool`: the features at the first / last / argmax-id / eos token."""
    if pool_type == "first":
        return x[:, 0]
    if pool_type == "last":
        return x[:, -1]
    rows = torch.arange(x.shape[0], device=x.device)
    if pool_type == "argmax":  # the eot token has the largest id
        return x[rows, ids.argmax(dim=-1)]
    if pool_type == "eos":
        return x[rows, (ids == eos_id).int().argmax(dim=-1)]
    return x


def encode_text_tokens(model, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(per-token hidden states after ln_final [B,L,width], projected pooled [B,embed_dim]) of an
    open_clip `CLIP` or a `TextTower`.

    The same computation as `CLIP.encode_text`, keeping the token states. The text transformer
    is causal, so the states of real tokens do not depend on the padding after them.
    """
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(ids).to(cast_dtype)
    x = x + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    tokens = model.ln_final(x)
    pooled = pool_tokens(tokens, ids, model.text_pool_type, getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is not None:
        pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
    return tokens, pooled


def read_clip_config(folder: str | os.PathLike) -> tuple[dict, str]:
    """(the 'clip' entry of a CLIP folder's config.json, the path of its weights), with errors
    naming the folder and what is missing: FileNotFoundError for a missing folder or file,
    ValueError for an unreadable config or one without a 'clip' entry."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"CLIP checkpoint folder {folder!r} does not exist")
    cfg_path, w_path = os.path.join(folder, CONFIG_NAME), os.path.join(folder, WEIGHTS_NAME)
    for p, what in ((cfg_path, "config.json with a 'clip' entry"), (w_path, "model.safetensors")):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"CLIP checkpoint {folder!r}: missing {os.path.basename(p)} ({what})")
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"CLIP checkpoint {folder!r}: cannot read config.json: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("clip"), dict):
        raise ValueError(f"CLIP checkpoint {folder!r}: config.json has no 'clip' entry")
    return raw["clip"], w_path


def load_text_tower(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TextTower, list[int], int]:
    """(text tower in eval mode, float32, on `device`; compact vocab; context length) from a CLIP
    folder written by `core.models.clip_model.save_clip_folder`; only the text tensors are read.
    ValueError if the folder is unreadable, NotImplementedError if its config uses an option the
    tower lacks (open_clip's `CLIP` then serves, `core.models.clip_model.load_clip_folder`)."""
    from safetensors import safe_open

    folder = os.fspath(folder)
    clip, w_path = read_clip_config(folder)
    try:
        vocab = [int(i) for i in clip["vocab"]]
        text = clip["text"]
        embed_dim = int(clip.get("embed_dim", 192))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"CLIP checkpoint {folder!r}: cannot read its config.json: {e}") from e
    # built on the CPU: initialising on the meta device would import torch._dynamo (seconds)
    tower = TextTower(text, len(vocab) + _FIRST_WORD_ID, embed_dim)
    own = tower.state_dict()
    try:
        with safe_open(w_path, "pt") as f:
            state = {k: f.get_tensor(k) for k in own}
    except Exception as e:  # a missing key or a corrupt file
        raise ValueError(f"CLIP checkpoint {folder!r}: cannot read the text tower from model.safetensors: {e}") from e
    wrong = [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"CLIP checkpoint {folder!r}: weights do not match config.json: {wrong[:5]}")
    tower.load_state_dict({k: v.float() for k, v in state.items()})
    return tower.to(device).eval().requires_grad_(False), vocab, tower.context_length
