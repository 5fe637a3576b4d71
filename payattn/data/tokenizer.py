"""A word-level tokenizer that app runtimes reproduce exactly from the .tflite file alone.

Text is split at every run of delimiters: characters that are neither letters, digits nor
apostrophes, together with the apostrophes that open or close such a run ("'quoted'" gives
"quoted", "don't" stays one word). The same split is written into each .tflite's metadata
as a regex tokenizer in RE2 syntax (DELIMITER_RE2), which MediaPipe Tasks runs as it is.

The vocabulary is the training split's most frequent lower-cased words, ties broken
alphabetically, so fitting is deterministic. A word is looked up as written, in a table
holding each vocabulary word in lower case, Capitalised and UPPER CASE (all three share one
id): the runtime's lookup is case-sensitive, so this table is what makes "The" and "the"
the same word in both. Ids: 0 = <PAD>, 1 = <UNKNOWN> (the names MediaPipe looks up), then
words by rank; no start token. Every text becomes exactly `max_length` ids: longer texts are
cut at the end, shorter ones are padded at the end. Text after a NUL character is ignored,
as the runtime reads a C string.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from payattn.errors import PayattnError
from payattn.files import write_file_atomic

SCHEMA = "payattn.tokenizer/2"
# Python's [^\W_] is "letter or digit", RE2's [\pL\pN]: the two patterns split alike.
DELIMITER = r"'*(?:[^\w']|_)+'*"
DELIMITER_RE2 = r"'*[^\pL\pN']+'*"
PAD, UNK = "<PAD>", "<UNKNOWN>"
CASES = "lower, Capitalised or UPPER"


_split = re.compile(DELIMITER).split


def words(text: str) -> list[str]:
    """The words of `text` as the runtime's tokenizer cuts them: up to a NUL, split on
    DELIMITER, case kept."""
    return [w for w in _split(text.split("\0", 1)[0]) if w]


def case_forms(word: str) -> tuple[str, str, str]:
    """The spellings of a vocabulary word that find it: lower, Capitalised, UPPER."""
    return word, word[:1].upper() + word[1:], word.upper()


class Tokenizer:
    """Maps texts to int32 ids [N, max_length]; build with `Tokenizer.fit` or `Tokenizer.load`."""

    pad_id = 0
    unk_id = 1

    def __init__(self, vocab: Sequence[str], max_length: int) -> None:
        if list(vocab[:2]) != [PAD, UNK] or len(vocab) < 3 or len(set(vocab)) != len(vocab):
            raise PayattnError(
                f"a vocabulary must start with {PAD!r}, {UNK!r}, hold at least one word and "
                "no repeats"
            )
        if max_length < 1:
            raise PayattnError(f"max_length must be at least 1, got {max_length}")
        self.vocab = list(vocab)
        self.max_length = int(max_length)
        self.lookup = self._lookup_table(self.vocab)

    @staticmethod
    def _lookup_table(vocab: list[str]) -> dict[str, int]:
        """Spelling -> id: every word as given first, then its other case forms by rank (a
        form two words share belongs to the more frequent one)."""
        table = {word: i for i, word in enumerate(vocab)}
        for form in (1, 2):
            for i, word in enumerate(vocab[2:], start=2):
                table.setdefault(case_forms(word)[form], i)
        return table

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int, max_length: int) -> "Tokenizer":
        """Keep the `max_vocab - 2` most frequent words of `texts` (the training split)."""
        if max_vocab < 3:
            raise PayattnError(f"max_vocab must be at least 3 (pad, unk and one word), got {max_vocab}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(text.lower()))
        if not counts:
            raise PayattnError("cannot fit a tokenizer: the training texts contain no words")
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([PAD, UNK] + [word for word, _ in ranked[: max_vocab - 2]], max_length)

    def tokenize(self, text: str) -> list[str]:
        """The words of `text` as written (case kept), as the runtime's tokenizer cuts them."""
        return words(text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """int32 ids [len(texts), max_length], padded (or cut) at the end."""
        if isinstance(texts, str):
            raise PayattnError("Tokenizer.encode takes a list of texts, not a single string")
        out = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int32)
        lookup, unk, length = self.lookup.get, self.unk_id, self.max_length
        for row, text in enumerate(texts):
            ids = [lookup(word, unk) for word in words(text)[:length]]
            out[row, : len(ids)] = ids
        return out

    def vocab_file(self) -> str:
        """The lookup table as "spelling id" lines: the vocabulary file of the .tflite metadata."""
        return "".join(f"{word} {i}\n" for word, i in self.lookup.items())

    def save(self, path: Path) -> None:
        """Write the JSON file atomically: everything an app needs to tokenize identically."""
        path = Path(path)
        payload = {
            "schema": SCHEMA, "delimiter": DELIMITER, "delimiter_re2": DELIMITER_RE2,
            "case": CASES, "max_length": self.max_length, "pad_id": self.pad_id,
            "unk_id": self.unk_id, "vocab_size": self.vocab_size, "vocab": self.vocab,
        }
        write_file_atomic(path, json.dumps(payload, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise PayattnError(f"tokenizer file {path} is missing; retrain with `payattn train`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA or data.get("delimiter") != DELIMITER:
                raise ValueError(f"not a {SCHEMA} file with this version's delimiter")
            return cls(data["vocab"], data["max_length"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayattnError(
                f"tokenizer file {path} is malformed ({exc}); retrain with `payattn train`"
            ) from None
