"""Captioning adapter (paper Sec. 8.1): explain every word of a caption in one pass.

The target for word t is log p(w_t | image, w_<t) under teacher forcing, so all words of a
caption share one forward; the engine takes all their gradients in one batched backward.
The whole-caption target is the sum of the words' log-probs (the original code's single
map per caption).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from vlx.checkpoints import load_checkpoint
from vlx.data.shapes import ShapesWorld
from vlx.errors import InputError
from vlx.evaluate.pointing import PointingTally
from vlx.explanation import Explanation
from vlx.methods import explain
from vlx.models.encoders import SHAPES_PREPROCESS, arrays_to_tensor
from vlx.models.registry import checkpoint_path
from vlx.models.show_and_tell import EXPLAINED_LAYER, ShowAndTell
from vlx.text import Vocabulary, tokenize

WHOLE_CAPTION = "<caption>"
# The paper's target is the word's log-probability; the pre-softmax logit is the ablation.
WORD_SCORES = ("log-prob", "logit")


class WordLogProbs:
    """Callable target: (N, L+1, V) logits -> (N, T) log-probs of the caption's words.

    ``positions`` picks the words to explain (default: all); the whole-caption target, when
    asked for, is appended last and always sums every word. The word ids are the same for
    every image, so the callable serves any batch size (occlusion scores many copies of one
    image).
    """

    def __init__(
        self,
        word_ids: Sequence[int],
        whole_caption: bool = False,
        positions: Sequence[int] | None = None,
        score: str = "log-prob",
    ) -> None:
        if score not in WORD_SCORES:
            raise InputError(f"unknown word score {score!r}; valid: {', '.join(WORD_SCORES)}")
        self.word_ids = torch.tensor(list(word_ids), dtype=torch.long)
        self.whole_caption = whole_caption
        self.positions = list(range(len(word_ids))) if positions is None else list(positions)
        self.score = score

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        ids = self.word_ids.to(logits.device)
        log_probs = logits[:, : len(ids)]
        if self.score == "log-prob":
            log_probs = log_probs.log_softmax(dim=-1)
        per_word = log_probs.gather(2, ids.expand(logits.shape[0], -1).unsqueeze(-1))[..., 0]
        chosen = per_word[:, self.positions]
        if self.whole_caption:
            return torch.cat([chosen, per_word.sum(dim=1, keepdim=True)], dim=1)
        return chosen


class Captioner:
    """A Show-and-Tell model with its vocabulary, ready to caption and to be explained."""

    def __init__(
        self,
        model: ShowAndTell,
        vocabulary: Vocabulary,
        device: str | torch.device = "cpu",
        layer: str = EXPLAINED_LAYER,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocabulary = vocabulary
        self.layer = layer

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> Captioner:
        """The shipped ShapesWorld captioner, or a checkpoint from ``vlx train captioner``."""
        file = Path(path) if path is not None else checkpoint_path("captioner_shapes")
        if not file.is_file():
            raise InputError(f"captioner checkpoint {str(file)!r} does not exist")
        model, vocabulary = ShowAndTell.from_checkpoint(load_checkpoint(file))
        return cls(model, vocabulary, device)

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return SHAPES_PREPROCESS.batch(list(images)).to(self.device)

    def caption(self, inputs: torch.Tensor, beam: int = 0) -> list[list[str]]:
        """Greedy captions, or beam search of width ``beam`` when it is above 1."""
        v = self.vocabulary
        if beam > 1:
            return [v.decode(self.model.beam(x[None], v.start, v.end, beam)) for x in inputs]
        return [v.decode(ids) for ids in self.model.greedy(inputs, v.start, v.end)]

    def words(self, caption: str | Sequence[str]) -> list[str]:
        """Validated words of a caption: every word must be in the vocabulary."""
        words = tokenize(caption) if isinstance(caption, str) else list(caption)
        if not words:
            raise InputError(f"caption {caption!r} has no words")
        for word in words:
            self.vocabulary.require(word)
        return words

    def teacher_forcing(self, words: Sequence[str], count: int) -> torch.Tensor:
        """Token input ``[<start>, w1..wn]`` repeated for ``count`` images."""
        ids = [self.vocabulary.start, *self.vocabulary.encode(list(words), strict=True)]
        return torch.tensor(ids, device=self.device).expand(count, -1)

    def explain(
        self,
        inputs: torch.Tensor,
        words: Sequence[str],
        method: str = "gradcam",
        whole_caption: bool = False,
        layer: str | None = None,
        positions: Sequence[int] | None = None,
        score: str = "log-prob",
    ) -> Explanation:
        """Maps for the words of ``words`` at ``positions`` (default: every word; the same
        caption for all N images), plus the whole-caption map as a last target when
        ``whole_caption``. The whole caption is always fed (teacher forcing)."""
        words = self.words(words)
        chosen = list(range(len(words))) if positions is None else list(positions)
        bad = [p for p in chosen if not 0 <= p < len(words)]
        if bad:
            raise InputError(f"word position {bad[0]} is out of range; valid: 0..{len(words) - 1}")
        tokens = self.teacher_forcing(words, inputs.shape[0])
        target = WordLogProbs(self.vocabulary.encode(words), whole_caption, chosen, score)
        explanation = explain(
            self.model, inputs, tokens, method=method, targets=target, layer=layer or self.layer
        )
        labels = [words[p] for p in chosen] + ([WHOLE_CAPTION] if whole_caption else [])
        return replace(explanation, targets=[labels] * inputs.shape[0])


POINTED_CATEGORIES = ("colour", "shape", "texture")


def caption_pointing(
    captioner: Captioner,
    world: ShapesWorld,
    start: int,
    count: int,
    layer: str | None = None,
    progress: bool = True,
    score: str = "log-prob",
) -> dict[str, dict[str, dict[str, float]]]:
    """Pointing game for the grounded words of ShapesWorld's reference captions.

    Each scene's reference caption is explained word by word (teacher forcing). ``lenient``
    counts a hit on any instance of the word's category (any blue object for "blue"), as the
    paper does; ``strict`` only on the one object the word describes (the background for a
    texture word).
    """
    lenient, strict = PointingTally(), PointingTally()
    scenes = range(start, start + count)
    if progress:
        from tqdm.auto import tqdm

        scenes = tqdm(scenes, desc="pointing (caption)", unit="image")
    for index in scenes:
        scene = world.scene(index)
        tokens = scene.caption_grounding()
        inputs = arrays_to_tensor([scene.image]).to(captioner.device)
        maps = captioner.explain(inputs, [t.word for t in tokens], layer=layer, score=score).maps
        for t, token in enumerate(tokens):
            if token.category not in POINTED_CATEGORIES:
                continue
            referent = (
                scene.object_mask(token.referent)
                if isinstance(token.referent, int)
                else scene.background_mask()
            )
            for tally, mask in ((lenient, scene.word_mask(token.word)), (strict, referent)):
                tally.add(token.category, maps[:, t : t + 1], torch.from_numpy(mask)[None, None])
    return {"lenient": lenient.summary(), "strict": strict.summary()}
