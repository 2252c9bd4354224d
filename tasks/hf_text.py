"""Words and the sub-word tokens a Hugging Face tokenizer makes of them.

People name words ("dog", "sitting"); HF models score sub-word tokens ("sit", "##ting",
"Ġdog"). A word here is a whitespace-separated piece of the text, and the tokens of the text
are assigned to words through the tokenizer's character offsets, so any fast tokenizer
(WordPiece, byte-level BPE, SentencePiece) is grouped the same way.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Sequence
from typing import Any

from vlx.errors import InputError
from vlx.tasks.captioning import TokenizedText

_WORD = re.compile(r"\S+")


def split_words(text: str | Sequence[str], what: str = "caption") -> list[str]:
    """Whitespace-separated words of a text, or a list of words checked to be such; none is
    an error naming ``what`` was empty."""
    words = _WORD.findall(text) if isinstance(text, str) else list(text)
    for word in words:
        if not isinstance(word, str) or _WORD.fullmatch(word) is None:
            raise InputError(f"word {word!r} is empty or holds whitespace; give single words")
    if not words:
        raise InputError(f"{what} {text!r} has no words")
    return words


def tokenize_words(tokenizer: Any, words: Sequence[str]) -> TokenizedText:
    """The tokens of ``" ".join(words)`` grouped by word; a word without tokens, or with one
    the tokenizer reads as unknown, is an error."""
    tokenized = group_tokens(tokenizer, words)
    for word, group in zip(words, tokenized.groups):
        if not group:
            raise InputError(f"word {word!r} has no tokens (the tokenizer drops it)")
    _check_known(tokenizer, tokenized)
    return tokenized


def group_tokens(tokenizer: Any, words: Sequence[str]) -> TokenizedText:
    """The tokens of ``" ".join(words)`` and the word each belongs to.

    A token belongs to the word holding its last non-space character; a token of spaces only
    (byte-level BPE's lone "Ġ") belongs to the word after it.
    """
    text = " ".join(words)
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise InputError(
            "grouping tokens into words needs a fast tokenizer (tokenizer.json); "
            "explain tokens instead (group_words=False)"
        ) from None
    starts = [match.start() for match in _WORD.finditer(text)]
    groups: list[list[int]] = [[] for _ in words]
    for position, (start, end) in enumerate(encoding["offset_mapping"]):
        piece = text[start:end]
        anchor = start + len(piece.rstrip()) - 1 if piece.strip() else end
        word = min(max(bisect.bisect_right(starts, anchor) - 1, 0), len(words) - 1)
        groups[word].append(position)
    return TokenizedText(list(words), list(encoding["input_ids"]), groups)


def tokenize_tokens(tokenizer: Any, tokens: str | Sequence[str]) -> TokenizedText:
    """Each token its own unit: a text is tokenized, a list is taken as token strings."""
    units = tokenizer.tokenize(tokens) if isinstance(tokens, str) else list(tokens)
    if not units:
        raise InputError(f"caption {tokens!r} has no tokens")
    ids = tokenizer.convert_tokens_to_ids(units)
    tokenized = TokenizedText(units, list(ids), [[t] for t in range(len(units))])
    _check_known(tokenizer, tokenized)
    return tokenized


def group_ids(tokenizer: Any, ids: Sequence[int], words: bool = True) -> TokenizedText:
    """Generated token ids as units, keeping the ids themselves: re-tokenizing the decoded
    text can give other ids (byte-level BPE: "2363" generated as one token comes back as "2",
    "363"), whose log-probs would no longer describe what was generated.

    Each token's characters are found by decoding growing prefixes of ``ids``; a token
    belongs to the word holding its last non-space character, a token of spaces only to the
    word after it (as ``group_tokens`` assigns them). ``words=False``: one unit per token.
    """
    specials = set(tokenizer.all_special_ids)
    kept = [int(i) for i in ids if int(i) not in specials]
    if not words:
        units = tokenizer.convert_ids_to_tokens(kept)
        return TokenizedText(list(units), kept, [[t] for t in range(len(kept))])
    pieces, decoded = [], ""
    for k in range(len(kept)):
        text = tokenizer.decode(kept[: k + 1], skip_special_tokens=True)
        if not text.startswith(decoded):  # a token that changes earlier characters
            text = decoded + tokenizer.decode(kept[k : k + 1], skip_special_tokens=True)
        pieces.append((len(decoded), len(text)))
        decoded = text
    starts = [match.start() for match in _WORD.finditer(decoded)]
    units = _WORD.findall(decoded)
    groups: list[list[int]] = [[] for _ in units]
    for position, (start, end) in enumerate(pieces):
        piece = decoded[start:end]
        if not units:
            break
        anchor = start + len(piece.rstrip()) - 1 if piece.strip() else end
        word = min(max(bisect.bisect_right(starts, anchor) - 1, 0), len(units) - 1)
        groups[word].append(position)
    empty = [u for u, g in zip(units, groups) if not g]
    if empty:
        raise InputError(f"generated word {empty[0]!r} has no token of its own")
    return TokenizedText(units, kept, groups)


def unknown_units(tokenizer: Any, tokenized: TokenizedText) -> list[str]:
    """Units with a token the tokenizer reads as unknown (``[UNK]``)."""
    unknown = tokenizer.unk_token_id
    return [
        unit
        for unit, group in zip(tokenized.units, tokenized.groups)
        if any(tokenized.ids[t] in (unknown, None) for t in group)
    ]


def _check_known(tokenizer: Any, tokenized: TokenizedText) -> None:
    unknown = unknown_units(tokenizer, tokenized)
    if not unknown:
        return
    specials = set(tokenizer.all_special_tokens)
    known = [w for w in tokenizer.get_vocab() if w not in specials and w.isalpha()]
    close = difflib.get_close_matches(unknown[0].lower(), known, n=5, cutoff=0.5)
    hint = f"; closest words: {', '.join(close)}" if close else ""
    raise InputError(f"word {unknown[0]!r} is not in the tokenizer's vocabulary{hint}")
