"""ShapesWorld's grammar: a scene's caption, grounded word by word, and its questions.

Captions name the objects left to right, each later one by its true relation to the one
before; questions are asked only where their answer follows from the ground truth alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from vlx.data.shapes.vocabulary import COLOURS, COUNT_WORDS, PLURALS, SHAPES


class Placed(Protocol):
    """An object as the grammar reads it: what it is and where its box lies."""

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]


class Described(Protocol):
    """A scene as the grammar reads it (``vlx.data.shapes.scene.Scene``)."""

    objects: Sequence[Placed]
    background: str
    index: int
    seed: int

QUESTION_STREAM = 1  # third seed word: question choices never share the image's stream


class Token(NamedTuple):
    """One caption word and what it refers to.

    Attributes:
        word: the word as it appears in the caption.
        category: "colour", "shape", "size", "texture", or None for function words.
        referent: the object index for colour/shape/size words, "background" for a texture
            word, None otherwise.
    """

    word: str
    category: str | None
    referent: int | str | None


class Question(NamedTuple):
    """A question about a scene with its one-word answer.

    Attributes:
        text: the question, lower-case, ending in "?" (spelt "color").
        answer: one of ``ANSWERS``.
        kind: one of ``QUESTION_KINDS``.
        referent: index of the object the answer is about, or None where no single object is
            (counts, "no" answers, a "yes" about several objects).
    """

    text: str
    answer: str
    kind: str
    referent: int | None


def caption_grounding(scene: Described) -> list[Token]:
    """The caption as grounded tokens, so each word can be scored against its pixels."""
    tokens: list[Token] = []
    for i, obj in enumerate(scene.objects):
        if i > 0:
            relation = _relation(scene.objects[i - 1].box, obj.box)
            tokens += [Token(w, None, None) for w in relation.split()]
        tokens += [
            Token("a", None, None),
            Token(obj.size, "size", i),
            Token(obj.colour, "colour", i),
            Token(obj.shape, "shape", i),
        ]
    tokens += [Token("on", None, None), Token("a", None, None)]
    if scene.background == "plain":
        tokens.append(Token("plain", None, None))
    else:
        tokens.append(Token(scene.background, "texture", "background"))
    tokens.append(Token("background", None, None))
    return tokens


def questions(scene: Described) -> list[Question]:
    """Question/answer pairs whose answers follow from the ground truth, in kind order.

    Only unambiguous questions are asked: a shape or colour is named alone only where it is
    unique, relations only between objects unique by colour and shape whose boxes are
    horizontally apart. Existence questions are half "yes", half near-miss "no".
    """
    rng = np.random.default_rng([scene.seed, scene.index, QUESTION_STREAM])
    objs = scene.objects
    shapes = [o.shape for o in objs]
    colours = [o.colour for o in objs]
    pairs = [(o.colour, o.shape) for o in objs]
    out: list[Question] = []
    for i, o in enumerate(objs):
        if shapes.count(o.shape) == 1:
            out.append(Question(f"what color is the {o.shape}?", o.colour, "colour", i))
    for i, o in enumerate(objs):
        if colours.count(o.colour) == 1:
            out.append(Question(f"what shape is the {o.colour} object?", o.shape, "shape", i))

    out.append(Question("how many objects are there?", COUNT_WORDS[len(objs)], "count", None))
    absent_shapes = [s for s in SHAPES if s not in shapes]
    asked = sorted(set(shapes), key=SHAPES.index)
    if absent_shapes:
        asked.append(absent_shapes[rng.integers(len(absent_shapes))])
    for s in asked:
        out.append(
            Question(
                f"how many {_plural(s)} are there?", COUNT_WORDS[shapes.count(s)], "count", None
            )
        )

    present = list(dict.fromkeys(pairs))
    for c, s in present:
        referent = pairs.index((c, s)) if pairs.count((c, s)) == 1 else None
        out.append(Question(f"is there a {c} {s}?", "yes", "exist", referent))
    near_misses = [
        (c, s)
        for c in COLOURS
        for s in SHAPES
        if (c, s) not in pairs and (c in colours or s in shapes)
    ]
    for k in rng.permutation(len(near_misses))[: len(present)]:
        c, s = near_misses[k]
        out.append(Question(f"is there a {c} {s}?", "no", "exist", None))

    unique = [i for i, p in enumerate(pairs) if pairs.count(p) == 1]
    for a_pos, a in enumerate(unique):
        for b in unique[a_pos + 1 :]:
            if objs[a].box[2] > objs[b].box[0]:
                continue  # horizontal extents overlap: "left of" would be ambiguous
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            answer = "yes" if first == a else "no"
            text = (
                f"is the {colours[first]} {shapes[first]} left of "
                f"the {colours[second]} {shapes[second]}?"
            )
            out.append(Question(text, answer, "relation", first))
    return out


def _plural(shape: str) -> str:
    return next(p for p, s in PLURALS.items() if s == shape)


def _relation(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> str:
    """The true relation of box ``a`` to box ``b`` (``a`` not right of ``b``) with the widest gap.

    Boxes are a margin apart, so the widest gap is positive and the relation holds strictly.
    """
    gaps = {"left of": b[0] - a[2], "above": b[1] - a[3], "below": a[1] - b[3]}
    return max(gaps, key=gaps.__getitem__)
