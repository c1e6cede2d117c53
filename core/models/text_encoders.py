"""Frozen text encoders behind one interface: the project's small CLIP (open_clip) and T5
(transformers `T5EncoderModel`, e.g. the T5 of DeepFloyd IF).

    enc = ClipTextEncoder.from_folder("checkpoints/clip")          # or T5TextEncoder.from_pretrained(...)
    emb = enc.encode(["woman dancing", ""])                          # '' = unconditional prompt (CFG)
    emb.tokens [B, L, width] float32, emb.mask [B, L] bool, emb.pooled [B, pooled_width] float32

Every prompt batch is padded to the encoder's `max_length` (CLIP: its context length; T5: 77
by default, as in DeepFloyd IF), so conditional and unconditional embeddings always stack.
`mask` marks the real tokens (CLIP: sot ... eot; T5: the pieces and </s>); the states at
padded positions are whatever the encoder computes there, so consumers must use `mask`.

CLIP: `tokens` are the text transformer's per-token states after `ln_final` (before the
projection, width = text width); `pooled` is the projected state at eot (embed_dim), the
vector CLIP compares with images (not L2-normalised). T5: `tokens` = last_hidden_state,
`pooled` = mask-weighted mean of it (width = pooled_width = d_model).

Prompts must be strings: None or any other type is a ValueError (a single string is accepted
as a batch of one). Outputs are float32 on the encoder's device, computed under no_grad.
"""
from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.models.clip_text import CONFIG_NAME, CompactTokenizer, check_prompts, encode_text_tokens, load_text_tower


@dataclass
class TextEmbeddings:
    tokens: torch.Tensor   # [B, L, D] float
    mask: torch.Tensor     # [B, L] bool, True on real tokens
    pooled: torch.Tensor   # [B, D_pooled] float

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def as_cond(self) -> dict[str, torch.Tensor]:
        """The cond dict of a text_base (`core.models.networks`): it reads what its conditioning needs."""
        return {"tokens": self.tokens, "mask": self.mask, "pooled": self.pooled}

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> TextEmbeddings:
        return TextEmbeddings(self.tokens.to(device=device, dtype=dtype), self.mask.to(device),
                              self.pooled.to(device=device, dtype=dtype))

    def __getitem__(self, index) -> TextEmbeddings:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextEmbeddings(self.tokens[index], self.mask[index], self.pooled[index])

    def repeat(self, n: int) -> TextEmbeddings:
        """Each row repeated n times in place (row order a,a,b,b for n=2), as for n samples per prompt."""
        return TextEmbeddings(self.tokens.repeat_interleave(n, 0), self.mask.repeat_interleave(n, 0),
                              self.pooled.repeat_interleave(n, 0))

    @staticmethod
    def cat(items: Sequence[TextEmbeddings]) -> TextEmbeddings:
        return TextEmbeddings(torch.cat([e.tokens for e in items]), torch.cat([e.mask for e in items]),
                              torch.cat([e.pooled for e in items]))


MAX_PROMPT_CHARS = 2000  # a prompt is read this far at most: far more than any context of 77 tokens holds


class TextEncoder(abc.ABC):
    """A frozen text encoder. `width`: token feature size D; `pooled_width`: size of `pooled`;
    `max_length`: L of every batch it returns."""

    width: int
    pooled_width: int
    max_length: int

    @abc.abstractmethod
    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        ...

    @abc.abstractmethod
    def count_tokens(self, prompt: str) -> int:
        """Tokens of `prompt` with the special ones (sot / eot, </s>), before any cut."""

    def fit(self, prompt: str) -> str:
        """What the encoder reads of `prompt`: the whole (stripped) prompt when it fits in
        `max_length` tokens, else its longest start that does, cut after a word (inside the
        first word only when that alone is too long). Prompts are read up to MAX_PROMPT_CHARS
        characters, so a huge prompt costs no more than a long one."""
        text = check_prompts(prompt)[0].strip()
        if len(text) <= MAX_PROMPT_CHARS and self.count_tokens(text) <= self.max_length:
            return text
        text = text[:MAX_PROMPT_CHARS]

        def fits(end: int) -> bool:
            return self.count_tokens(text[:end]) <= self.max_length

        word_ends = [m.end() for m in re.finditer(r"\S+", text)]
        end = _last_fitting(word_ends, fits) or _last_fitting(range(1, len(text) + 1), fits) or 0
        return text[:end]

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        ...

    @abc.abstractmethod
    def to(self, device: str | torch.device) -> TextEncoder:
        ...


def _last_fitting(points: Sequence[int], fits) -> int | None:
    """The last of the increasing `points` for which `fits` holds (it holds up to some point,
    then no more), by bisection; None when it holds for none."""
    lo, hi = 0, len(points)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if fits(points[mid]) else (lo, mid)
    return points[lo - 1] if lo else None


def fit_prompts(encoder: TextEncoder, prompt: str, negative_prompt: str = "") -> tuple[str, str, str | None]:
    """(prompt, negative prompt, note): what `encoder` reads of each, which is what a result should
    be made from and store, and a note saying which was cut (None when neither was)."""
    used = [encoder.fit(prompt), encoder.fit(negative_prompt)]
    notes = [f"the {what} was cut to the {encoder.max_length} tokens the text encoder reads: {u!r}"
             for what, u, given in zip(("prompt", "negative prompt"), used, (prompt, negative_prompt))
             if u != given.strip()]
    return used[0], used[1], "; ".join(notes) or None


# ----------------------------------------------------------------------------- CLIP

class ClipTextEncoder(TextEncoder):
    """The text tower of the project's `open_clip.model.CLIP` (or `core.models.clip_text.TextTower`, the
    same tower without open_clip) with its `CompactTokenizer`."""

    def __init__(self, clip_model, tokenizer: CompactTokenizer):
        if tokenizer.vocab_size != clip_model.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model's token embedding "
                             f"has {clip_model.vocab_size}")
        if tokenizer.context_length != clip_model.context_length:
            raise ValueError(f"tokenizer context length {tokenizer.context_length} != model's "
                             f"{clip_model.context_length}")
        self.model = clip_model
        self.tokenizer = tokenizer
        self.width = int(clip_model.transformer.width)
        proj = clip_model.text_projection
        if proj is None:
            self.pooled_width = self.width
        else:
            self.pooled_width = int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])
        self.max_length = int(tokenizer.context_length)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> ClipTextEncoder:
        """Load from a folder with config.json ({"clip": ClipConfig dict}) + model.safetensors
        (see core.models.clip_model); fp16 weights are cast to float32. The text tower is
        `core.models.clip_text`'s (no open_clip import), or open_clip's `CLIP` for a config it lacks."""
        try:
            tower, vocab, context_length = load_text_tower(folder, device)
        except NotImplementedError:
            from core.models.clip_model import load_clip_folder  # deferred: open_clip
            model, config = load_clip_folder(folder, device)
            return cls(model, CompactTokenizer.from_config(config))
        return cls(tower, CompactTokenizer(vocab, context_length))

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    def to(self, device: str | torch.device) -> ClipTextEncoder:
        self.model.to(device)
        return self

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer.bpe.encode(prompt)) + 2   # sot ... eot

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        ids, mask = self.tokenizer(prompts)
        ids = ids.to(self.device)
        tokens, pooled = encode_text_tokens(self.model, ids)
        return TextEmbeddings(tokens.float(), mask.to(self.device), pooled.float())


# ----------------------------------------------------------------------------- T5

T5_ALLOW_PATTERNS = [
    "config.json", "model*.safetensors", "model.safetensors.index*.json", "tokenizer*.json",
    "spiece.model", "special_tokens_map.json", "added_tokens.json", "model_index.json",
    "text_encoder/*", "tokenizer/*",
]
T5_IGNORE_PATTERNS = ["*.bin", "*.msgpack", "*.h5", "*.ckpt", "*.pt", "*.pth", "*.onnx", "*.onnx_data", "*.ot"]
_T5_MODEL_TYPES = ("t5", "mt5")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # huggingface_hub's default


def resolve_folder(path_or_repo_id: str | os.PathLike, what: str = "model",
                   allow_patterns: list[str] | None = None, ignore_patterns: list[str] | None = None,
                   revision: str | None = None) -> str:
    """A local folder as is, or a Hub repo id through `huggingface_hub.snapshot_download`.

    The environment is read at call time: HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) searches
    only the local cache, HF_HUB_CACHE / HF_HOME choose the cache. Raises FileNotFoundError
    naming the path / repo id when neither works.
    """
    if path_or_repo_id is None:
        raise ValueError(f"{what}: no path or Hub repo id given")
    name = os.path.expanduser(os.fspath(path_or_repo_id))
    if os.path.exists(name):
        if not os.path.isdir(name):
            raise FileNotFoundError(f"{what}: {name!r} is a file; expected a folder")
        return name
    from huggingface_hub import constants
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:
        raise FileNotFoundError(f"{what}: no such folder {name!r} (and it is not a valid Hub repo id)") from None
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE
    cache_dir = _hub_cache_dir()
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(name, revision=revision, cache_dir=cache_dir, local_files_only=offline,
                                 allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
    except Exception as e:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP errors, ...
        where = cache_dir or constants.HF_HUB_CACHE
        how = f"HF_HUB_OFFLINE=1, so only the local Hub cache {where!r} was searched" if offline \
            else f"download failed; cache {where!r}"
        raise FileNotFoundError(f"{what}: {name!r} is not a local folder and the Hub repo {name!r} could "
                                f"not be loaded ({how}): {type(e).__name__}: {e}") from e


def _t5_layout(folder: str) -> tuple[str, str]:
    """(model dir, tokenizer dir) for a plain T5 folder or a diffusers pipeline folder."""
    if os.path.isfile(os.path.join(folder, "text_encoder", "config.json")):
        model_dir = os.path.join(folder, "text_encoder")
        tok_dir = os.path.join(folder, "tokenizer")
        if not os.path.isdir(tok_dir):
            tok_dir = model_dir
        return model_dir, tok_dir
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder, folder
    raise FileNotFoundError(
        f"T5 text encoder {folder!r}: no config.json (expected a T5 folder with config.json, "
        "model.safetensors and tokenizer files, or a diffusers pipeline folder with "
        "text_encoder/config.json and tokenizer/)")


def _has_weights(model_dir: str, variant: str | None) -> bool:
    names = os.listdir(model_dir)
    stem = "model" if variant is None else f"model.{variant}"
    return any(n.startswith(stem) and (n.endswith(".safetensors") or n.endswith(".safetensors.index.json"))
               for n in names) or any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names)


def _t5_tokenizer_from_spiece(tok_dir: str):
    """T5Tokenizer from spiece.model using the sentencepiece library only.

    transformers 5 converts spiece.model through protobuf (not installed here); this builds the
    same Unigram vocabulary from `SentencePieceProcessor` instead. The sentencepiece
    normalisation table (NFKC-like) is not carried over, which only matters for unusual
    unicode in prompts.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "spiece.model"))
    if sp.unk_id() != 2:
        raise ValueError(f"T5 tokenizer {tok_dir!r}: spiece.model has unk id {sp.unk_id()}, "
                         "T5 expects <pad>=0, </s>=1, <unk>=2")
    cfg = {}
    cfg_path = os.path.join(tok_dir, "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
    vocab = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=int(cfg.get("extra_ids", 100)),
                       pad_token=sp.id_to_piece(sp.pad_id()) if sp.pad_id() >= 0 else "<pad>",
                       eos_token=sp.id_to_piece(sp.eos_id()) if sp.eos_id() >= 0 else "</s>",
                       unk_token=sp.id_to_piece(sp.unk_id()))


def load_t5_tokenizer(tok_dir: str):
    """AutoTokenizer from tokenizer.json (or spiece.model when protobuf is installed); a bare
    spiece.model without protobuf goes through `_t5_tokenizer_from_spiece`."""
    has_json = os.path.isfile(os.path.join(tok_dir, "tokenizer.json"))
    has_spiece = os.path.isfile(os.path.join(tok_dir, "spiece.model"))
    if not (has_json or has_spiece):
        raise FileNotFoundError(f"T5 tokenizer {tok_dir!r}: no tokenizer.json or spiece.model")
    if not has_json:
        try:
            import google.protobuf  # noqa: F401  (transformers converts spiece.model with it)
            has_protobuf = True
        except ImportError:
            has_protobuf = False
        if not has_protobuf:
            try:
                return _t5_tokenizer_from_spiece(tok_dir)
            except ValueError:
                raise
            except Exception as e:
                raise ValueError(f"T5 tokenizer {tok_dir!r}: cannot load spiece.model: {e}") from e
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(tok_dir)
    except Exception as e:
        if not has_spiece:
            raise ValueError(f"T5 tokenizer {tok_dir!r}: cannot load tokenizer.json: {e}") from e
        try:
            return _t5_tokenizer_from_spiece(tok_dir)
        except Exception as e2:
            raise ValueError(f"T5 tokenizer {tok_dir!r}: cannot load spiece.model ({e}; {e2})") from e2


class T5TextEncoder(TextEncoder):
    """A transformers `T5EncoderModel` with its tokenizer. Prompts are padded/truncated to
    `max_length` tokens (77 as in DeepFloyd IF) with </s> appended."""

    def __init__(self, model, tokenizer, max_length: int = 77):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.width = self.pooled_width = int(model.config.d_model)
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"T5 tokenizer has {len(tokenizer)} tokens but the model only "
                             f"{model.config.vocab_size} embeddings")

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", max_length: int = 77,
                        revision: str | None = None, variant: str | None = None,
                        load_in_8bit: bool = False) -> T5TextEncoder:
        """Load a local folder or Hub repo (plain T5 layout, or diffusers layout with
        text_encoder/ + tokenizer/). Only safetensors weights are fetched from the Hub.
        On GPU prefer dtype=torch.bfloat16 (T5 v1.1 overflows in fp16). `load_in_8bit` quantizes
        the linear layers with bitsandbytes (a CUDA device only; such a model stays on it)."""
        if load_in_8bit:
            import importlib.util
            if importlib.util.find_spec("bitsandbytes") is None:
                raise ValueError("T5 in 8-bit needs the bitsandbytes package, which is not installed")
            if torch.device(device).type != "cuda":
                raise ValueError(f"T5 in 8-bit needs a CUDA device, got {device!r}")
        folder = resolve_folder(path_or_hub_id, "T5 text encoder", T5_ALLOW_PATTERNS, T5_IGNORE_PATTERNS,
                                revision)
        model_dir, tok_dir = _t5_layout(folder)
        try:
            with open(os.path.join(model_dir, "config.json")) as f:
                model_type = json.load(f).get("model_type")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise ValueError(f"T5 text encoder {model_dir!r}: unreadable config.json: {e}") from e
        if model_type not in _T5_MODEL_TYPES:
            raise ValueError(f"T5 text encoder {model_dir!r}: config.json has model_type {model_type!r}, "
                             f"expected one of {_T5_MODEL_TYPES}")
        if not _has_weights(model_dir, variant):
            raise FileNotFoundError(f"T5 text encoder {model_dir!r}: no weights "
                                    f"(model{'.' + variant if variant else ''}.safetensors)")
        tokenizer = load_t5_tokenizer(tok_dir)
        from transformers import T5EncoderModel
        quantized = {}
        if load_in_8bit:
            from transformers import BitsAndBytesConfig
            quantized = dict(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": str(device)})
        try:
            model = T5EncoderModel.from_pretrained(model_dir, dtype=dtype, variant=variant, **quantized)
        except Exception as e:
            raise ValueError(f"T5 text encoder {model_dir!r}: cannot load weights: {e}") from e
        return cls(model if load_in_8bit else model.to(device), tokenizer, max_length)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> T5TextEncoder:
        self.model.to(device)
        return self

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])   # the pieces and </s>

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = check_prompts(prompts)
        enc = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool()

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        tokens = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state.float()
        w = mask.float()[..., None]
        pooled = (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)
        return TextEmbeddings(tokens, mask, pooled)


def load_text_encoder(path_or_hub_id: str | os.PathLike, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> TextEncoder:
    """A CLIP folder (config.json with a "clip" entry) or anything T5TextEncoder loads."""
    folder = resolve_folder(path_or_hub_id, "text encoder", T5_ALLOW_PATTERNS + ["model.safetensors"],
                            T5_IGNORE_PATTERNS)
    cfg_path = os.path.join(folder, CONFIG_NAME)
    if os.path.isfile(cfg_path):
        try:
            with open(cfg_path) as f:
                is_clip = "clip" in json.load(f)
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"text encoder {folder!r}: unreadable config.json: {e}") from e
        if is_clip:
            return ClipTextEncoder.from_folder(folder, device)
    return T5TextEncoder.from_pretrained(folder, dtype=dtype, device=device)


__all__ = ["TextEmbeddings", "TextEncoder", "ClipTextEncoder", "T5TextEncoder", "load_text_encoder", "fit_prompts",
           "resolve_folder", "load_t5_tokenizer"]
