"""Words: tokenising captions and questions, and the vocabulary that numbers them.

Tokenising uses nltk's Treebank-style regular-expression tokenizer, which needs no data
download; everyday spellings ("Color", "colour?") are folded to one form.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from vlx.errors import InputError

PAD, START, END, UNKNOWN = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNKNOWN)
# British and American spellings mean the same word to a model trained on one of them.
SPELLINGS = {"colour": "color", "colours": "colors", "grey": "gray"}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation; spelling variants folded."""
    from nltk.tokenize import TreebankWordTokenizer

    tokens = TreebankWordTokenizer().tokenize(text.lower())
    words = [w for token in tokens for w in _WORD.findall(token)]
    return [SPELLINGS.get(w, w) for w in words]


class Vocabulary:
    """Word <-> id; ids 0-3 are ``<pad> <start> <end> <unk>``."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """The words of ``texts`` seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for text in texts for w in tokenize(text))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([w for w, c in ranked if c >= min_count])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def pad(self) -> int:
        return self.index[PAD]

    @property
    def start(self) -> int:
        return self.index[START]

    @property
    def end(self) -> int:
        return self.index[END]

    def encode(self, text: str | Sequence[str], strict: bool = False) -> list[int]:
        """Word ids; unknown words become ``<unk>``, or an ``InputError`` when ``strict``."""
        words = tokenize(text) if isinstance(text, str) else list(text)
        if strict:
            for word in words:
                self.require(word)
        unknown = self.index[UNKNOWN]
        return [self.index.get(w, unknown) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first ``<end>``, specials dropped."""
        words = []
        for i in ids:
            if i == self.end:
                break
            if i >= len(SPECIALS):
                words.append(self.words[i])
        return words

    def require(self, word: str) -> int:
        """The id of ``word``, or an error naming the closest known words."""
        if word in self.index and word not in SPECIALS:
            return self.index[word]
        close = difflib.get_close_matches(word, self.words[len(SPECIALS) :], n=5, cutoff=0.5)
        hint = ", ".join(close) if close else ", ".join(self.words[len(SPECIALS) :][:10]) + ", ..."
        raise InputError(f"word {word!r} is not in the vocabulary; closest words: {hint}")

    def state(self) -> list[str]:
        return self.words[len(SPECIALS) :]
