"""Textual explanations on hand-made alphas and unit names: order, the 0.05 rule, the text."""

from __future__ import annotations

import json

import pytest
import torch

from vlx.dissect.names import UnitName
from vlx.dissect.textual import RankedUnit, textual_explanation, textual_explanations
from vlx.explanation import Explanation

# Unit k: (category, label, IoU). Unit 3 is at exactly the 0.05 threshold, unit 1 just below.
NAMES = [
    UnitName(0, "colour", "red", 0.31),
    UnitName(1, "colour", "blue", 0.049),
    UnitName(2, "shape", "circle", 0.22),
    UnitName(3, "texture", "striped", 0.05),
    UnitName(4, "shape", "star", 0.12),
    UnitName(5, "colour", "green", 0.02),
    UnitName(6, "texture", "dotted", 0.08),
    UnitName(7, "shape", "square", 0.40),
]
ALPHAS = [0.9, 0.5, 0.7, -0.3, 0.1, -0.8, -0.05, 0.0]


def test_top_and_bottom_units_are_ordered_by_alpha_and_split_by_sign() -> None:
    text = textual_explanation(torch.tensor(ALPHAS), NAMES, "red", k=5)
    # Positive alphas, largest first: 0.9 (0), 0.7 (2), 0.5 (1), 0.1 (4); unit 7 (0) is neither.
    assert [u.unit for u in text.persuasive] == [0, 2, 1, 4]
    # Negative alphas, most negative first: -0.8 (5), -0.3 (3), -0.05 (6).
    assert [u.unit for u in text.inhibitive] == [5, 3, 6]
    assert [u.alpha for u in text.inhibitive] == pytest.approx([-0.8, -0.3, -0.05])


def test_a_name_is_shown_only_from_iou_0_05() -> None:
    text = textual_explanation(ALPHAS, NAMES, "red")
    names = {u.unit: u.name for u in text.persuasive + text.inhibitive}
    assert names[3] == "striped"  # IoU 0.05: named
    assert names[1] == "unnamed unit 1"  # IoU 0.049: not
    assert names[5] == "unnamed unit 5"
    assert names[0] == "red"


def test_k_limits_each_side() -> None:
    text = textual_explanation(ALPHAS, NAMES, "red", k=2)
    assert [u.unit for u in text.persuasive] == [0, 2]
    assert [u.unit for u in text.inhibitive] == [5, 3]


def test_k_larger_than_the_layer_lists_every_unit_of_each_sign_once() -> None:
    text = textual_explanation(ALPHAS, NAMES, "red", k=100)
    listed = [u.unit for u in text.persuasive + text.inhibitive]
    assert sorted(listed) == [0, 1, 2, 3, 4, 5, 6]  # every nonzero-alpha unit, none twice


def test_ties_keep_unit_order() -> None:
    names = [UnitName(k, "colour", "red", 0.3) for k in range(6)]
    text = textual_explanation([0.5, 0.2, 0.5, -0.1, 0.5, -0.1], names, "x", k=5)
    assert [u.unit for u in text.persuasive] == [0, 2, 4, 1]
    assert [u.unit for u in text.inhibitive] == [3, 5]


def test_sentence_names_units_with_their_iou() -> None:
    text = textual_explanation(ALPHAS, NAMES, "red")
    assert text.sentence() == (
        '"red" because of units detecting red (IoU 0.31), circle (0.22), star (0.12) and '
        "1 unnamed unit (1); despite units detecting striped (IoU 0.05), dotted (0.08) and "
        "1 unnamed unit (5)"
    )


def test_sentence_without_positive_or_negative_units() -> None:
    names = NAMES[:2]
    assert textual_explanation([-1.0, -2.0], names, "star").sentence() == (
        '"star": no unit has a positive weight; despite units detecting red (IoU 0.31) and '
        "1 unnamed unit (1)"
    )
    unnamed = [UnitName(k, "colour", "red", 0.01) for k in range(3)]
    assert textual_explanation([0.1, 0.3, 0.2], unnamed, "star").sentence() == (
        '"star" because of 3 unnamed units (1, 2, 0)'
    )
    assert textual_explanation([1.0, 0.0], names, "star").sentence() == (
        '"star" because of units detecting red (IoU 0.31)'
    )


def test_structured_form_is_json_with_alpha_name_and_iou() -> None:
    text = textual_explanation(ALPHAS, NAMES, "red", k=2, layer="encoder.stages.2")
    data = json.loads(json.dumps(text.to_dict()))
    assert data["target"] == "red" and data["layer"] == "encoder.stages.2"
    assert data["sentence"] == text.sentence()
    assert data["persuasive"][0] == {
        "unit": 0, "alpha": 0.9, "name": "red", "named": True, "category": "colour",
        "label": "red", "iou": 0.31,
    }
    assert data["inhibitive"][0]["name"] == "unnamed unit 5"
    assert data["inhibitive"][0]["label"] == "green" and data["inhibitive"][0]["named"] is False


def test_alphas_and_names_of_different_lengths_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="alphas for 3 units but the dissection names 8 units"):
        textual_explanation([1.0, 2.0, 3.0], NAMES, "red", layer="bn2")


def test_names_out_of_unit_order_and_batched_alphas_are_errors() -> None:
    with pytest.raises(ValueError, match="entry 0 is for unit 1"):
        textual_explanation([1.0, 2.0], [NAMES[1], NAMES[0]], "red")
    with pytest.raises(ValueError, match="one target's"):
        textual_explanation(torch.ones(2, 8), NAMES, "red")
    with pytest.raises(ValueError, match="k must be at least 1"):
        textual_explanation(ALPHAS, NAMES, "red", k=0)


def test_per_target_explanations_read_the_alphas_of_each_target() -> None:
    alphas = torch.tensor([[ALPHAS, [-a for a in ALPHAS]]])  # (1, 2, 8): a target and its negation
    explanation = Explanation(
        maps=torch.zeros(1, 2, 2, 2), scores=torch.zeros(1, 2), targets=[["red", "not red"]],
        method="gradcam", alphas=alphas, layer="layer4",
    )
    red, negated = textual_explanations(explanation, NAMES, ["red", "not red"])
    assert red.layer == "layer4" and negated.target == "not red"
    assert [u.unit for u in negated.persuasive] == [5, 3, 6]
    guided = Explanation(maps=torch.zeros(1, 1, 2, 2), scores=torch.zeros(1, 1), targets=None,
                         method="guided-backprop")
    with pytest.raises(ValueError, match="gradcam, guided-gradcam, counterfactual"):
        textual_explanations(guided, NAMES, ["red"])


def test_ranked_unit_name_uses_the_threshold() -> None:
    assert RankedUnit(9, "shape", "cross", 0.06, 0.1).name == "cross"
    assert RankedUnit(9, "shape", "cross", 0.0, 0.1).name == "unnamed unit 9"


def test_figure_draws_image_overlay_and_one_bar_per_unit_in_its_colour() -> None:
    import numpy as np

    from vlx.dissect.figure import INHIBITIVE_RGB, PERSUASIVE_RGB, textual_figure

    text = textual_explanation(ALPHAS, NAMES, "red", k=5)
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    figure = np.asarray(textual_figure(image, np.zeros((32, 32, 3), np.uint8), text, panel_size=64))
    # Image and overlay are scaled to the panel size: the black overlay fills a 64 x 64 tile.
    assert (figure[26:90, 76:140] == 0).all()
    # Bars: one row per unit; the longest bar (|alpha| 0.9) is 110 px, the bar for 0.1 12 px.
    green = (figure == PERSUASIVE_RGB).all(axis=-1)
    red = (figure == INHIBITIVE_RGB).all(axis=-1)
    green_rows = [row.sum() for row in green if row.any()]
    assert max(green_rows) == 111 and min(green_rows) == 13  # rectangle includes both ends
    assert len({r for r, row in enumerate(green) if row.any()}) == 4 * 13  # 4 bars, 13 px high
    assert len({r for r, row in enumerate(red) if row.any()}) == 3 * 13


def test_counterfactual_alphas_are_read_as_the_targets_own() -> None:
    alphas = torch.tensor([[ALPHAS]])
    kwargs = {"maps": torch.zeros(1, 1, 2, 2), "scores": torch.zeros(1, 1), "targets": None}
    gradcam = Explanation(method="gradcam", alphas=alphas, **kwargs)
    counterfactual = Explanation(method="counterfactual", alphas=-alphas, **kwargs)
    assert textual_explanations(counterfactual, NAMES, ["red"]) == textual_explanations(
        gradcam, NAMES, ["red"]
    )
