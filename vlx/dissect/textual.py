"""Textual explanations (paper Sec. 7): which named units push a target up, and which down.

Grad-CAM's alpha_k says how much unit k of the explained layer matters for one target;
Network Dissection says what unit k detects. Sorting the units by alpha and reading their
names turns a map into a sentence: "red" because of units detecting red and circle, despite
units detecting striped. A unit is persuasive when its alpha is positive and inhibitive when
negative, so the two lists never share a unit and a target with few negative alphas simply
has few inhibitive units. A concept name is shown only where the unit's IoU reaches
``MIN_IOU`` (0.05, as the paper); weaker units are called "unnamed unit K".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlx.dissect.names import UnitName
from vlx.methods import ALPHA_METHODS

if TYPE_CHECKING:
    import torch

    from vlx.explanation import Explanation

TOP_UNITS = 5
"""Units listed per side, as in the paper's Fig. 9."""



@dataclass(frozen=True)
class RankedUnit(UnitName):
    """A unit of the explained layer: its dissection name and its weight for the target."""

    alpha: float

    @property
    def name(self) -> str:
        """The concept it detects, or "unnamed unit K" where no concept reaches ``MIN_IOU``."""
        return self.label if self.named else f"unnamed unit {self.unit}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "alpha": self.alpha,
            "name": self.name,
            "named": self.named,
            "category": self.category,
            "label": self.label,
            "iou": self.iou,
        }


@dataclass(frozen=True)
class TextualExplanation:
    """The top units for (``persuasive``, largest alpha first) and against (``inhibitive``,
    most negative alpha first) one target at one layer."""

    target: str
    layer: str | None
    persuasive: list[RankedUnit]
    inhibitive: list[RankedUnit]

    def sentence(self) -> str:
        """E.g. ``"red" because of units detecting red (IoU 0.31), circle (0.22) and 1 unnamed
        unit (17); despite units detecting striped (IoU 0.08)``: named units in alpha order,
        then the unnamed ones by number."""
        text = f'"{self.target}"'
        if self.persuasive:
            text += f" because of {_unit_list(self.persuasive)}"
        else:
            text += ": no unit has a positive weight"
        if self.inhibitive:
            text += f"; despite {_unit_list(self.inhibitive)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the sentence and both unit lists with alpha, name and IoU."""
        return {
            "target": self.target,
            "layer": self.layer,
            "sentence": self.sentence(),
            "persuasive": [u.to_dict() for u in self.persuasive],
            "inhibitive": [u.to_dict() for u in self.inhibitive],
        }


def textual_explanation(
    alphas: torch.Tensor | Sequence[float],
    units: Sequence[UnitName],
    target: str,
    k: int = TOP_UNITS,
    layer: str | None = None,
) -> TextualExplanation:
    """Rank the units of one target by its alphas (K,) and name the top and bottom ``k``.

    ``units`` is the dissection of the same layer, one entry per unit in unit order. Equal
    alphas keep unit order (a stable sort), so the text is reproducible. ``k`` larger than
    the number of units lists every unit of the right sign.

    Raises:
        ValueError: the alphas and the dissection have different unit counts (a dissection
            of another layer), ``units`` is not in unit order, or ``k`` is below 1.
    """
    values = alphas.tolist() if hasattr(alphas, "tolist") else list(alphas)
    if any(isinstance(v, list) for v in values):
        raise ValueError("alphas must be one target's (K,) unit weights, not a batch of them")
    weights = [float(v) for v in values]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(weights) != len(units):
        raise ValueError(
            f"the target has alphas for {len(weights)} units but the dissection names "
            f"{len(units)} units; dissect the explained layer{f' {layer!r}' if layer else ''}"
        )
    misplaced = next((i for i, u in enumerate(units) if u.unit != i), None)
    if misplaced is not None:
        raise ValueError(
            f"dissection entry {misplaced} is for unit {units[misplaced].unit}; "
            "units must be listed in unit order"
        )
    ranked = [
        RankedUnit(u.unit, u.category, u.label, u.iou, w) for u, w in zip(units, weights)
    ]
    positive = sorted((u for u in ranked if u.alpha > 0), key=lambda u: -u.alpha)
    negative = sorted((u for u in ranked if u.alpha < 0), key=lambda u: u.alpha)
    return TextualExplanation(target, layer, positive[:k], negative[:k])


def textual_explanations(
    explanation: Explanation,
    units: Sequence[UnitName],
    targets: Sequence[str],
    image: int = 0,
    k: int = TOP_UNITS,
) -> list[TextualExplanation]:
    """One textual explanation per target of image ``image`` of a Grad-CAM-family
    explanation; ``targets`` names its T targets as a person reads them."""
    alphas = target_alphas(explanation)
    if len(targets) != explanation.num_targets:
        raise ValueError(
            f"{len(targets)} target names for {explanation.num_targets} explained targets"
        )
    return [
        textual_explanation(alphas[image, t], units, name, k, explanation.layer)
        for t, name in enumerate(targets)
    ]


def target_alphas(explanation: Explanation) -> torch.Tensor:
    """(N, T, K) the alphas of the targets themselves: a counterfactual explanation stores
    them negated (Sec. 3.3), so its text still says what speaks for and against the target."""
    if explanation.alphas is None:
        raise ValueError(
            f"{explanation.method} gives no alphas; textual explanations need one of "
            f"{', '.join(ALPHA_METHODS)}"
        )
    return -explanation.alphas if explanation.method == "counterfactual" else explanation.alphas


def _unit_list(units: Sequence[RankedUnit]) -> str:
    named = [u for u in units if u.named]
    unnamed = [str(u.unit) for u in units if not u.named]
    parts = [
        f"{u.label} ({'IoU ' if i == 0 else ''}{u.iou:.2f})" for i, u in enumerate(named)
    ]
    text = f"units detecting {', '.join(parts)}" if parts else ""
    if unnamed:
        plural = "s" if len(unnamed) > 1 else ""
        rest = f"{len(unnamed)} unnamed unit{plural} ({', '.join(unnamed)})"
        text = f"{text} and {rest}" if text else rest
    return text
