"""How a prompt was read: the emoji whose names the text encoder finds closest to it, and the
words it does not know.

The semantic base turns a prompt into the pooled embedding of the project's CLIP text encoder
(`checkpoints/clip`) and the prior draws a code for that embedding. What the prior can draw is
the emoji it was trained on, each known by its name; so the emoji whose names lie nearest to the
prompt in the pooled text space (cosine similarity) say what the prompt was read as. A word made
of pieces outside the tokenizer's vocabulary (the words of the training captions) would reach the
encoder as an unknown token, which pulls the whole prompt somewhere unrelated: `readable_prompt`
replaces it by its singular when that is known and leaves it out otherwise, as the semantic base
does before it encodes a prompt (`core.cascade.generate`).

Python::

    reader = prompt_reader(encoder)          # encoder: a ClipTextEncoder; the training emoji
    reading = reader.read("a blue car")      # Reading(nearest=[NearEmoji(...), ...], unknown=[...])
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core.models.clip_text import UNK_ID

READ_K = 5   # the nearest emoji shown


@dataclass(frozen=True)
class NearEmoji:
    index: int          # position in the reader's records (a data set index with the default records)
    name: str
    emoji: str
    similarity: float   # cosine similarity of the pooled text embeddings


@dataclass(frozen=True)
class Reading:
    prompt: str
    read: str            # the text the encoder was given (`readable_prompt`)
    nearest: list[NearEmoji]
    unknown: list[str]   # words with a piece outside the tokenizer's vocabulary

    def summary(self) -> str:
        """One line: 'read as: name (0.93), ...; not understood: word, ...'."""
        line = "read as: " + ", ".join(f"{n.emoji} {n.name} ({n.similarity:.2f})" for n in self.nearest)
        if self.unknown:
            line += "; not understood: " + ", ".join(self.unknown)
            if self.read != self.prompt:
                line += f" (read {self.read!r})"
        return line


def name_text(record) -> str:
    """The text an emoji is known by: its lowercased name, "base, qualifier" for "base: qualifier"
    (the prompt the model cards measure names with)."""
    return record.name.lower().replace(": ", ", ")


def unknown_words(encoder, prompt: str) -> list[str]:
    """The words of ``prompt`` (letters or digits) with a token outside ``encoder``'s vocabulary,
    in order, once each; [] for an encoder without a compact vocabulary (nothing it cannot read)."""
    tokenizer = getattr(encoder, "tokenizer", None)
    lut = getattr(tokenizer, "_lut", None)
    if lut is None:
        return []
    bpe = tokenizer.bpe
    out = []
    for word in bpe._words(bpe._clean(prompt)):
        if not any(c.isalnum() for c in word):
            continue   # punctuation says nothing either way
        ids = torch.tensor(bpe.encode(word), dtype=torch.long)
        if len(ids) and bool((lut[ids] == UNK_ID).any()) and word not in out:
            out.append(word)
    return out


def _known(encoder, word: str) -> bool:
    ids = torch.tensor(encoder.tokenizer.bpe.encode(word), dtype=torch.long)
    return len(ids) > 0 and not bool((encoder.tokenizer._lut[ids] == UNK_ID).any())


def _singulars(word: str) -> list[str]:
    """English singulars a plural may have: berries -> berry, boxes -> box, dogs -> dog."""
    out = []
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        out.append(word[:-1])
    return out


def readable_prompt(encoder, prompt: str) -> tuple[str, str | None]:
    """(the prompt as the text encoder can read it, a note or None). A word outside the encoder's
    vocabulary reaches it as an unknown token, which pulls the whole pooled embedding somewhere
    unrelated ("a <unk> rocket" reads as a parachute); so such a word is replaced by its singular
    when that is known ("bananas" -> "banana") and left out otherwise. A prompt with no known word
    left is kept as it is. Prompts whose words are all known (every emoji name) are unchanged."""
    unknown = unknown_words(encoder, prompt)
    if not unknown:
        return prompt, None
    text, done = prompt, []
    for word in unknown:
        singular = next((w for w in _singulars(word) if _known(encoder, w)), None)
        text = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", singular or "", text, flags=re.IGNORECASE)
        done.append(f"{word!r} read as {singular!r}" if singular else f"{word!r} left out")
    text = re.sub(r"\s+([,.!?])", r"\1", " ".join(text.split())).strip(" ,")
    if not text or not any(c.isalnum() for c in text):
        return prompt, f"no word of the prompt is in the text encoder's vocabulary ({', '.join(unknown)})"
    return text, "words the text encoder does not know: " + "; ".join(done)


class PromptReader:
    """The pooled text embeddings of the names of ``records`` under ``encoder``, computed once;
    :meth:`read` ranks them by cosine similarity to a prompt's."""

    def __init__(self, encoder, records: Sequence, batch: int = 512, cache: str | os.PathLike | None = None):
        """`cache`: a folder where the embeddings are kept between processes, under a key of the
        encoder's weights and the names (encoding the 3,293 names takes seconds on a CPU, reading
        them back milliseconds; a cold `python -m core generate` prints a reading)."""
        if not records:
            raise ValueError("a prompt reader needs at least one emoji to compare with")
        self.encoder = encoder
        self.records = list(records)
        texts = [name_text(r) for r in self.records]
        key = None if cache is None else _key(encoder, texts)
        path = None if key is None else Path(cache) / f"names-{key}.pt"
        if path is not None and path.is_file():
            try:
                self.embeddings = torch.load(path, map_location="cpu", weights_only=True)
                if self.embeddings.shape[0] == len(texts):
                    return
            except Exception:   # a torn or foreign file: compute again and overwrite it
                pass
        self.embeddings = F.normalize(torch.cat([encoder.encode(texts[s:s + batch]).pooled.float().cpu()
                                                 for s in range(0, len(texts), batch)]), dim=1)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                torch.save(self.embeddings, tmp)
                os.replace(tmp, path)
            except OSError:   # a read-only cache only costs the time
                pass

    def read(self, prompt: str, k: int = READ_K) -> Reading:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("give a prompt to read")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        read, _ = readable_prompt(self.encoder, prompt)   # as the semantic base reads it
        q = F.normalize(self.encoder.encode([read]).pooled.float().cpu(), dim=1)
        sims = (q @ self.embeddings.T)[0]
        top = sims.topk(min(k, len(self.records)))
        nearest = [NearEmoji(int(i), self.records[int(i)].name, self.records[int(i)].emoji, float(s))
                   for s, i in zip(top.values.tolist(), top.indices.tolist())]
        return Reading(prompt, read, nearest, unknown_words(self.encoder, prompt))


def _key(encoder, texts: Sequence[str]) -> str | None:
    """sha1 of the encoder's weights and the texts: a cached embedding is its own encoder's."""
    h = hashlib.sha1(type(encoder).__name__.encode())
    module = encoder if isinstance(encoder, torch.nn.Module) else getattr(encoder, "model", None)
    weights = module.state_dict().items() if isinstance(module, torch.nn.Module) else ()
    if not weights:   # nothing to tell two such encoders apart by: not cached
        return None
    for name, tensor in sorted(weights):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    h.update("\n".join(texts).encode())
    return h.hexdigest()[:16]


def reader_cache_dir() -> Path:
    """Next to the emoji data set's cache (``$EMOJI_CACHE_DIR``/../prompt_reader)."""
    from core.data.emoji import default_cache_dir  # deferred: the data set module, as prompt_reader does
    return default_cache_dir().parent / "prompt_reader"


def prompt_reader(encoder, data=None) -> PromptReader:
    """The reader of ``encoder`` over the training emoji of ``data`` (default: the emoji data set),
    made once per encoder and kept on it. Its ``index`` of each emoji is the data set's."""
    reader = getattr(encoder, "_prompt_reader", None)
    if reader is None or (data is not None and reader.data is not data):
        if data is None:
            from core.data.emoji import load_dataset  # deferred: reads the data set cache
            data = load_dataset()
        train = data.indices("train").tolist()
        reader = PromptReader(encoder, [data.records[i] for i in train], cache=reader_cache_dir())
        reader.data, reader.data_index = data, train
        encoder._prompt_reader = reader
    return reader


def read_prompt(encoder, prompt: str, data=None, k: int = READ_K) -> Reading:
    """How ``encoder`` reads ``prompt`` against the training emoji of ``data``; each NearEmoji's
    ``index`` is a data set index."""
    reader = prompt_reader(encoder, data)
    reading = reader.read(prompt, k)
    nearest = [NearEmoji(reader.data_index[n.index], n.name, n.emoji, n.similarity) for n in reading.nearest]
    return Reading(reading.prompt, reading.read, nearest, reading.unknown)
