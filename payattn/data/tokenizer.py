"""A word-level tokenizer small enough to re-implement in an app from its JSON file.

Text is lower-cased and split into words by one regular expression (saved in the file);
the vocabulary is the training split's most frequent words, ties broken alphabetically,
so fitting is deterministic. Ids: 0 = padding, 1 = unknown word, then words by rank.
Every text becomes exactly `max_length` ids: longer texts are cut at the end, shorter ones
are padded at the end.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from payattn.errors import PayattnError

SCHEMA = "payattn.tokenizer/1"
# Runs of letters/digits, keeping inner apostrophes ("don't", "o'brien").
WORD_PATTERN = r"[^\W_]+(?:'[^\W_]+)*"
PAD, UNK = "<pad>", "<unk>"


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
        self._ids = {word: i for i, word in enumerate(self.vocab)}
        pattern = re.compile(WORD_PATTERN)
        self._split, self._words = pattern.findall, pattern.finditer

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int, max_length: int) -> "Tokenizer":
        """Keep the `max_vocab - 2` most frequent words of `texts` (the training split)."""
        if max_vocab < 3:
            raise PayattnError(f"max_vocab must be at least 3 (pad, unk and one word), got {max_vocab}")
        split = re.compile(WORD_PATTERN).findall
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split(text.lower()))
        if not counts:
            raise PayattnError("cannot fit a tokenizer: the training texts contain no words")
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([PAD, UNK] + [word for word, _ in ranked[: max_vocab - 2]], max_length)

    def tokenize(self, text: str) -> list[str]:
        return self._split(text.lower())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """int32 ids [len(texts), max_length], padded (or cut) at the end."""
        if isinstance(texts, str):
            raise PayattnError("Tokenizer.encode takes a list of texts, not a single string")
        out = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int32)
        lookup, unk, length = self._ids.get, self.unk_id, self.max_length
        for row, text in enumerate(texts):
            # Stop scanning after max_length words: long reviews cost no more than short ones.
            words = islice(self._words(text.lower()), length)
            ids = [lookup(match.group(), unk) for match in words]
            out[row, : len(ids)] = ids
        return out

    def save(self, path: Path) -> None:
        """Write the JSON file atomically: everything an app needs to tokenize identically."""
        path = Path(path)
        payload = {
            "schema": SCHEMA, "lowercase": True, "pattern": WORD_PATTERN,
            "max_length": self.max_length, "pad_id": self.pad_id, "unk_id": self.unk_id,
            "vocab_size": self.vocab_size, "vocab": self.vocab,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise PayattnError(f"tokenizer file {path} is missing; retrain with `payattn train`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA or data.get("pattern") != WORD_PATTERN:
                raise ValueError(f"not a {SCHEMA} file with this version's word pattern")
            return cls(data["vocab"], data["max_length"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayattnError(
                f"tokenizer file {path} is malformed ({exc}); retrain with `payattn train`"
            ) from None
