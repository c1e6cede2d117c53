"""How a prompt was read: the known emoji nearest to it, and the words the text encoder does not know.

The semantic base turns a prompt into the pooled embedding of the project's CLIP text encoder
(`checkpoints/clip`) and the prior draws a code for that embedding. What the prior can draw is
the emoji it was trained on, each known by its name; so the emoji nearest to the prompt say what
the prompt was read as. An emoji is known by several phrasings (`phrasings`): its name, its
training captions (`core.data.emoji.captions_for`) and the phrasings people type
(`core.data.captions.everyday_captions`: "a X", "X emoji", each CLDR keyword, the colour of its
pixels before the name and the keywords). Each emoji's score for a prompt (`PromptReader.read`):

    score = T log sum_p exp(cos(q, e_p) / T)  +  NAME_WEIGHT cos(q, e_name)  +  WORD_WEIGHT overlap

a soft maximum over its phrasings' cosine similarities to the prompt's pooled embedding q
(temperature `SOFT_T`: an emoji that several phrasings match, "a car" and "a red car", beats one
that matches once), the similarity to its name (which breaks the ties of a keyword many emoji
share, "car", towards the emoji the word names), and the share of the prompt's words (less "a",
"the", "of", ...; a plural also as its singular) found among the words of its name, keywords and
colour; a full stop, "!" or "?" ending the prompt is left out. A prompt that asks no skin tone
is read among the default emoji of designs drawn with tones. The settings were chosen on
`core/evaluation/everyday_prompts_check.json` (everyday prompts written apart from the measured
ones); `python scripts/everyday_reading.py` measures the reading.

A word made of pieces outside the tokenizer's vocabulary (the words of the training captions)
would reach the encoder as an unknown token, which pulls the whole prompt somewhere unrelated:
`readable_prompt` replaces it by its singular when that is known and leaves it out otherwise, as
the semantic base does before it encodes a prompt (`core.cascade.generate`).

Python::

    reader = prompt_reader(encoder)          # encoder: a ClipTextEncoder; the training emoji
    reading = reader.read("a blue car")      # Reading(nearest=[NearEmoji(...), ...], unknown=[...])
    reading.confident                        # the nearest emoji's score is at least CONFIDENT_SCORE

The prompt reading "nearest" (`nearest_prompt`, the semantic base's default) draws the nearest
emoji's name whenever the prompt has a word to go by (`Reading.grounded`), confidently read or
not: a prompt the models have no emoji for is drawn as a clean nearby emoji rather than as the
smear its own embedding gives the prior (measured: `checkpoints/prior/README.md`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from core.models.clip_text import UNK_ID

READ_K = 5   # the nearest emoji shown
# the score of a known emoji for a prompt (module doc), chosen on the check set of everyday prompts
SOFT_T = 0.02        # temperature of the soft maximum over an emoji's phrasings
NAME_WEIGHT = 0.05   # the cosine similarity to its name, added
WORD_WEIGHT = 0.1    # the share of the prompt's words among its own, added
# a prompt is read confidently as its nearest emoji from this score up: on the check set every reading
# at or above it was right but for two prompts whose emoji the models never saw ("a key" read as locked
# with key, "a girl" as a family with girls), and 6 of the 7 below it were wrong (scripts/everyday_reading.py)
CONFIDENT_SCORE = 1.05
_STOP_WORDS = frozenset("a an the of with some someone emoji picture and in on is it my one to for at".split())


@dataclass(frozen=True)
class NearEmoji:
    index: int          # position in the reader's records (a data set index with the default records)
    name: str
    emoji: str
    similarity: float   # cosine similarity of the pooled text embeddings: the nearest of its phrasings
    score: float = float("nan")   # its score for the prompt (module doc), which ranks the emoji
    phrase: str = ""    # its phrasing nearest to the prompt


@dataclass(frozen=True)
class Reading:
    prompt: str
    read: str            # the text the encoder was given (`readable_prompt`)
    nearest: list[NearEmoji]
    unknown: list[str]   # words with a piece outside the tokenizer's vocabulary

    @property
    def grounded(self) -> bool:
        """There is a nearest emoji and the text read has a word the text encoder knows besides
        articles and the like ("a kitty" with "kitty" unknown is read as "a": nothing to go by)."""
        unknown = {w.lower() for w in self.unknown}
        return bool(self.nearest) and any(w not in _STOP_WORDS and w not in unknown for w in _words(self.read))

    @property
    def confident(self) -> bool:
        """`grounded`, and the nearest emoji's score reaches `CONFIDENT_SCORE`."""
        return self.grounded and self.nearest[0].score >= CONFIDENT_SCORE

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


def phrasings(record, colour: str | None = None) -> list[str]:
    """The texts an emoji is known by, distinct, its name first (`name_text`): its training captions
    and the phrasings people type (module doc); ``colour`` the colour word of its pixels or None."""
    from core.data.captions import everyday_captions  # deferred: the data set module
    from core.data.emoji import captions_for  # deferred: the data set module
    return list(dict.fromkeys([name_text(record), *captions_for(record), *everyday_captions(record, colour)]))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _own_words(record, colour: str | None) -> frozenset[str]:
    """The words of an emoji's name, keywords and colour, each also as its singulars."""
    words = _words(record.name).union(*(_words(k) for k in record.keywords)) | ({colour} if colour else set())
    return frozenset(words.union(*(_singulars(w) for w in words)))


def word_overlap(prompt: str, own: Sequence[frozenset[str]]) -> torch.Tensor:
    """[len(own)]: the share of the prompt's words (less `_STOP_WORDS`) among each word set, a
    word counting when it or one of its singulars is there; 0 for a prompt of stop words only."""
    words = [{w, *_singulars(w)} for w in _words(prompt) if w not in _STOP_WORDS]
    if not words:
        return torch.zeros(len(own))
    return torch.tensor([sum(bool(w & o) for w in words) / len(words) for o in own])


class PromptReader:
    """The pooled text embeddings of the phrasings of ``records`` (`phrasings`) under ``encoder``,
    computed once; :meth:`read` ranks the emoji by their score for a prompt (module doc).

    ``records`` need ``name``, ``emoji`` and ``keywords`` (and ``skin_tone``, "none" where
    missing); ``colours`` the colour word of each one's pixels (`core.data.captions.colour_of`) or
    None for none."""

    def __init__(self, encoder, records: Sequence, batch: int = 512, cache: str | os.PathLike | None = None,
                 colours: Sequence[str | None] | None = None):
        """`cache`: a folder where the embeddings are kept between processes, under a key of the
        encoder's weights and the phrasings (encoding the 55,000 phrasings of the 3,293 training emoji
        takes two minutes on a CPU core, reading them back a fraction of a second)."""
        if not records:
            raise ValueError("a prompt reader needs at least one emoji to compare with")
        self.encoder = encoder
        self.records = list(records)
        colours = list(colours) if colours is not None else [None] * len(self.records)
        if len(colours) != len(self.records):
            raise ValueError(f"got {len(colours)} colours for {len(self.records)} emoji")
        texts, owner, name_row = [], [], []
        for i, (record, colour) in enumerate(zip(self.records, colours)):
            own = phrasings(record, colour)
            name_row.append(len(texts))   # its name is its first phrasing
            texts += own
            owner += [i] * len(own)
        self.texts = texts
        self.owner = torch.tensor(owner)                                   # the emoji of each phrasing
        self.name_row = torch.tensor(name_row)                             # its name's
        self.own_words = [_own_words(r, c) for r, c in zip(self.records, colours)]
        # a prompt that asks no skin tone is read among the default emoji of designs drawn with tones
        bases = {r.name.partition(": ")[0].lower() for r in self.records if _tone(r) == "none"}
        self.toned_twin = torch.tensor([_tone(r) != "none" and r.name.partition(": ")[0].lower() in bases
                                        for r in self.records])
        self.embeddings = self._embed(texts, batch, cache)

    def _embed(self, texts: list[str], batch: int, cache) -> torch.Tensor:
        key = None if cache is None else _key(self.encoder, texts)
        path = None if key is None else Path(cache) / f"phrasings-{key}.pt"
        if path is not None and path.is_file():
            try:
                embeddings = torch.load(path, map_location="cpu", weights_only=True).float()
                if embeddings.shape[0] == len(texts):
                    return embeddings
            except Exception:   # a torn or foreign file: compute again and overwrite it
                pass
        with torch.no_grad():
            embeddings = F.normalize(torch.cat([self.encoder.encode(texts[s:s + batch]).pooled.float().cpu()
                                                for s in range(0, len(texts), batch)]), dim=1)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                torch.save(embeddings.half(), tmp)   # half the disk; cosine similarities to ~1e-3
                os.replace(tmp, path)
                embeddings = embeddings.half().float()   # what a later process reads back: the same reading
            except OSError:   # a read-only cache only costs the time
                pass
        return embeddings

    def scores(self, read: str, asks_tone: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(score [N] of each emoji for the text ``read`` (module doc), its nearest phrasing's cosine
        similarity [N], that phrasing's row [N])."""
        with torch.no_grad():
            q = F.normalize(self.encoder.encode([read]).pooled.float().cpu(), dim=1)
        sims = (q @ self.embeddings.T)[0]
        n = len(self.records)
        best = torch.full((n,), -2.0).scatter_reduce(0, self.owner, sims, "amax")
        best_row = torch.zeros(n, dtype=torch.long).scatter_reduce(
            0, self.owner, torch.where(sims == best[self.owner], torch.arange(len(sims)), 0), "amax")
        # soft maximum over an emoji's phrasings, T log sum_p exp(s_p / T), shifted by its maximum to stay finite
        soft = best + SOFT_T * torch.zeros(n).scatter_add(0, self.owner, torch.exp((sims - best[self.owner]) / SOFT_T)
                                                          ).log()
        score = soft + NAME_WEIGHT * sims[self.name_row] + WORD_WEIGHT * word_overlap(read, self.own_words)
        if not asks_tone:
            score = score.masked_fill(self.toned_twin, float("-inf"))
        return score, best, best_row

    def read(self, prompt: str, k: int = READ_K) -> Reading:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("give a prompt to read")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        read, _ = readable_prompt(self.encoder, prompt)   # as the semantic base reads it
        from core.tone_words import split_tone  # deferred: it loads the DiffAE module
        # the stop that ends a sentence is not part of what to draw ("thumbs up!"; no emoji name ends so)
        asks_tone = split_tone(prompt)[1] is not None or "skin tone" in prompt.lower()   # one tone or several
        score, best, best_row = self.scores(read.rstrip(" .!?") or read, asks_tone)
        top = score.topk(min(k, int(torch.isfinite(score).sum())))
        nearest = [NearEmoji(int(i), self.records[int(i)].name, self.records[int(i)].emoji, float(best[i]), float(s),
                             self.texts[int(best_row[i])])
                   for s, i in zip(top.values.tolist(), top.indices.tolist())]
        return Reading(prompt, read, nearest, unknown_words(self.encoder, prompt))


def _tone(record) -> str:
    return getattr(record, "skin_tone", "none") or "none"


PROMPT_READINGS = ("nearest", "as-typed")
# the semantic base conditions its prior on the nearest known emoji's name when the prompt has a word
# to go by (checkpoints/prior/README.md, "Prompts as people type them": the everyday figure)
DEFAULT_PROMPT_READING = "nearest"


def check_prompt_reading(value) -> str:
    """`value`, one of `PROMPT_READINGS`; None is `DEFAULT_PROMPT_READING`."""
    if value is None:
        return DEFAULT_PROMPT_READING
    if value not in PROMPT_READINGS:
        raise ValueError(f"prompt reading must be one of {', '.join(PROMPT_READINGS)}; got {value!r}")
    return value


def nearest_prompt(encoder, prompt: str, data=None) -> tuple[str, Reading, NearEmoji | None]:
    """(what the prior is conditioned on with the prompt reading "nearest", the reading, the emoji
    drawn or None where the prompt is kept: the nearest, or its toned twin in ``data``). The prompt
    without its skin-tone words is read (`read_prompt`); when it has a word to go by
    (`Reading.grounded`), it is replaced by the nearest emoji's name (`name_text`: what the prior
    was trained on); a tone asked gives the name of
    that emoji's design in that tone ("a dancing woman with dark skin" -> "woman dancing, dark skin
    tone"), or its name with the tone after it where the design is never drawn with one ("troll, dark
    skin tone", which `core.tone_words` draws). The exact name of a training emoji is drawn from that
    name whatever the reading. A prompt with no word to go by is kept as it is."""
    from core.tone_words import split_tone  # deferred: it loads the DiffAE module
    reader = prompt_reader(encoder, data)
    data = reader.data   # the reader's own data set where none is given
    exact = reader.name_index.get(" ".join(prompt.lower().replace(": ", ", ").split()).strip(" ,.!?:"))
    if exact is not None:   # the name of a training emoji: drawn from that name, as it was trained
        reading = read_prompt(encoder, prompt, data)
        record = reader.records[exact]
        return name_text(record), reading, NearEmoji(reader.data_index[exact], record.name, record.emoji, 1.0,
                                                     reading.nearest[0].score, name_text(record))
    rest, tone = split_tone(prompt)
    reading = read_prompt(encoder, rest, data)
    if not reading.grounded:   # no word to go by: the prompt as typed
        return prompt, reading, None
    drawn = reading.nearest[0]
    text = name_text(drawn)
    if tone is not None:   # the asked tone, not the nearest emoji's own
        from core.data.emoji import design_of  # deferred: the data set module
        record = data.records[drawn.index]
        twin = next((i for i, r in enumerate(data.records) if r.skin_tone == tone and set(r.skin_tones) <= {tone}
                     and r.gender == record.gender and design_of(r) == design_of(record)), None)
        if twin is not None:   # the emoji of that design in that tone (perhaps one the models never saw)
            text = name_text(data.records[twin])
            drawn = replace(drawn, index=twin, name=data.records[twin].name, emoji=data.records[twin].emoji)
        else:   # a design never drawn with a tone: its name and the tone (core.tone_words moves its code)
            text = f"{split_tone(text)[0]}, {tone} skin tone"
    return text, reading, drawn


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


_READER_LOCK = threading.Lock()   # one reader made at a time: a request waits for the app's warm-up


def prompt_reader(encoder, data=None) -> PromptReader:
    """The reader of ``encoder`` over the training emoji of ``data`` (default: the emoji data set),
    made once per encoder and kept on it. Its ``index`` of each emoji is the data set's."""
    reader = getattr(encoder, "_prompt_reader", None)
    if reader is not None and (data is None or reader.data is data):
        return reader
    with _READER_LOCK:
        reader = getattr(encoder, "_prompt_reader", None)   # made meanwhile by another thread
        if reader is not None and (data is None or reader.data is data):
            return reader
        if data is None:
            from core.data.emoji import load_dataset  # deferred: reads the data set cache
            data = load_dataset()
        train = data.indices("train").tolist()
        reader = PromptReader(encoder, [data.records[i] for i in train], cache=reader_cache_dir(),
                              colours=_colours(data, train, reader_cache_dir()))
        reader.data, reader.data_index = data, train
        reader.name_index = {name_text(r): j for j, r in enumerate(reader.records)}
        encoder._prompt_reader = reader
    return reader


def _colours(data, indices: Sequence[int], cache: Path) -> list[str | None]:
    """The colour word of each emoji's pixels (`core.data.captions.colour_of`, seconds for the 3,293
    training emoji), kept in `cache` under a key of the data set's fingerprint (its sources and
    rendering, `core.data.emoji.read_meta`) and the emoji's names: a process reads them back."""
    from core.data.captions import colour_of  # deferred: the data set module
    fingerprint = (getattr(data, "meta", None) or {}).get("fingerprint")
    path = None
    if fingerprint:
        h = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode())
        h.update("\n".join(data.records[i].name for i in indices).encode())
        path = cache / f"colours-{h.hexdigest()[:16]}.json"
        try:
            colours = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(colours, list) and len(colours) == len(indices):
                return colours
        except (OSError, ValueError):   # missing, torn or foreign: measure again and overwrite it
            pass
    colours = [colour_of(data.images[i]) for i in indices]
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(colours), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:   # a read-only cache only costs the time
            pass
    return colours


def read_prompt(encoder, prompt: str, data=None, k: int = READ_K) -> Reading:
    """How ``encoder`` reads ``prompt`` against the training emoji of ``data`` (default: the emoji
    data set); each NearEmoji's ``index`` is a data set index."""
    reader = prompt_reader(encoder, data)
    reading = reader.read(prompt, k)
    nearest = [replace(n, index=reader.data_index[n.index]) for n in reading.nearest]
    return Reading(reading.prompt, reading.read, nearest, reading.unknown)
