"""The CAM family on the shared engine: each method's definition pinned to values computed by
hand on tiny models whose activations and gradients are set, T targets at once equal to one at
a time, and every method run by name through every adapter of the ShapesWorld models."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import vlx
from vlx.errors import InputError
from vlx.layers import TokenGrid
from vlx.methods import ALPHA_METHODS, CAM_FAMILY, CLASS_AGNOSTIC, COPY_METHODS, METHODS

# A (1, 2, 2, 2) activation: channel 0 sums to 4, channel 1 to 3.
A0 = [[1.0, 2.0], [0.0, 1.0]]
A1 = [[2.0, 0.0], [0.0, 1.0]]
# Target 0's gradient dy/dA (the score is linear in A); target 1's is its negation.
W0 = [[1.0, -1.0], [0.0, 2.0]]
W1 = [[-1.0, 1.0], [1.0, 2.0]]


class LinearInLayer(nn.Module):
    """y_t = sum_kij W_tkij A_kij, with A the ``layer``'s output (the input itself)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.register_buffer("weights", weights)

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkhw,tkhw->nt", self.layer(activation), self.weights)


@pytest.fixture
def linear() -> tuple[nn.Module, torch.Tensor]:
    weights = torch.tensor([W0, W1])
    return LinearInLayer(torch.stack([weights, -weights])).eval(), torch.tensor([[A0, A1]])


# Hand computations (target 0, gradient W; target 1, gradient -W):
#   HiResCAM  ReLU(sum_k W_k * A_k) = ReLU([[1,-2],[0,2]] + [[-2,0],[0,2]]) = [[0,0],[0,4]];
#             with -W: ReLU([[1,2],[0,-4]]) = [[1,2],[0,0]].
#   LayerCAM  ReLU(W_0) * A_0 + ReLU(W_1) * A_1 = [[1,0],[0,2]] + [[0,0],[0,2]] = [[1,0],[0,4]];
#             with -W: [[0,2],[0,0]] + [[2,0],[0,0]] = [[2,2],[0,0]].
#   XGrad-CAM w_k = sum(W_k * A_k) / sum(A_k) = (1 - 2 + 2) / 4, (-2 + 2) / 3 = 1/4, 0:
#             0.25 * A_0 = [[0.25,0.5],[0,0.25]]; with -W the weights are -1/4, 0: ReLU -> 0.
#   Grad-CAM++ alpha = g^2 / (2 g^2 + S g^3) with S = sum(A_k) = 4, 3, summed against ReLU(g):
#             channel 0: g = 1 -> 1/6, g = 2 -> 4/40; w_0 = 1/6 + 2/10 = 11/30;
#             channel 1: g = 1 -> 1/5 (twice), g = 2 -> 4/32; w_1 = 2/5 + 2/8 = 13/20;
#             map = 11/30 A_0 + 13/20 A_1 = [[5/3, 11/15], [0, 61/60]].
#             With -W: channel 0 has g = 1 once -> 1/6; channel 1 has g = 1 once -> 1/5:
#             map = A_0 / 6 + A_1 / 5 = [[17/30, 1/3], [0, 11/30]].
#   Grad-CAM  w = mean(W_k) = 1/2, 3/4: [[2, 1], [0, 1.25]]; with -W: ReLU(-that) = 0.
HAND = {
    "hirescam": ([[[0, 0], [0, 4]], [[1, 2], [0, 0]]], None),
    "layercam": ([[[1, 0], [0, 4]], [[2, 2], [0, 0]]], None),
    "xgradcam": ([[[0.25, 0.5], [0, 0.25]], [[0, 0], [0, 0]]], [[0.25, 0.0], [-0.25, 0.0]]),
    "gradcam++": ([[[5 / 3, 11 / 15], [0, 61 / 60]], [[17 / 30, 1 / 3], [0, 11 / 30]]],
                  [[11 / 30, 13 / 20], [1 / 6, 1 / 5]]),
    "gradcam": ([[[2, 1], [0, 1.25]], [[0, 0], [0, 0]]], [[0.5, 0.75], [-0.5, -0.75]]),
}


@pytest.mark.parametrize("method", HAND)
def test_gradient_methods_match_the_hand_computed_maps(linear, method) -> None:
    model, activation = linear
    maps, alphas = HAND[method]
    e = vlx.explain(model, activation, method=method, targets=[[0, 1]], layer="layer")
    torch.testing.assert_close(e.maps, torch.tensor([maps], dtype=torch.float32), rtol=0, atol=1e-6)
    if alphas is None:
        assert e.alphas is None
    else:
        torch.testing.assert_close(e.alphas, torch.tensor([alphas]), rtol=0, atol=1e-6)
    assert e.method == method and e.layer == "layer"


def test_gradcampp_never_divides_by_a_vanishing_denominator() -> None:
    """A channel summing to -2 with gradient 1 everywhere: 2 g^2 + S g^3 = 0 at every position,
    so its alphas are 0 (not inf or nan); the other channel carries the map alone."""
    activation = torch.tensor([[[[-0.5, -0.5], [-0.5, -0.5]], A1]])
    model = LinearInLayer(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]]]))
    e = vlx.explain(model.eval(), activation, method="gradcam++", targets=0, layer="layer")
    # channel 1: g = 1 at one position, S = 3: alpha = 1 / 5, so w = (0, 1/5): map = A_1 / 5.
    torch.testing.assert_close(e.alphas, torch.tensor([[[0.0, 0.2]]]), rtol=0, atol=1e-7)
    torch.testing.assert_close(e.maps, torch.tensor([[A1]]) / 5, rtol=0, atol=1e-7)


def test_eigencam_projects_on_the_first_principal_component(linear) -> None:
    """A rank-one activation A_k = u_k P with u = (3, 4): the first right singular vector is
    u / 5 and the projection is 5 P, the same map for every target."""
    model, _ = linear
    pattern = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    activation = torch.stack([3 * pattern, 4 * pattern])[None]
    e = vlx.explain(model, activation, method="eigencam", targets=[[0, 1]], layer="layer")
    torch.testing.assert_close(e.maps, (5 * pattern).expand(1, 2, 2, 2), rtol=0, atol=1e-5)
    assert e.alphas is None and e.meta["class_agnostic"]
    torch.testing.assert_close(e.scores, model(activation))
    # The singular vector's sign is chosen so the projection sums to >= 0: -P is flipped back.
    flipped = vlx.explain(model, -activation, method="eigencam", targets=0, layer="layer")
    torch.testing.assert_close(flipped.maps[0, 0], 5 * pattern, rtol=0, atol=1e-5)


class MaskedByLayer(nn.Module):
    """An image x (N, 1, 2, 2); the layer gives A = (x, 4 - x); the head reads A linearly:
    y_t = sum V_t0 * A_0 + sum V_t1 * A_1."""

    def __init__(self, heads: torch.Tensor) -> None:
        super().__init__()
        self.layer = Pair()
        self.register_buffer("heads", heads)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkhw,tkhw->nt", self.layer(image), self.heads)


class Pair(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, 4 - image], dim=1)


IMAGE = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
# A_0 = x = [[0, 1], [2, 4]], A_1 = 4 - x = [[4, 3], [2, 0]].
ACT0 = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
ACT1 = torch.tensor([[4.0, 3.0], [2.0, 0.0]])


def test_scorecam_weights_channels_by_the_softmax_of_their_masked_scores() -> None:
    """The masks are A_k scaled to [0, 1]: A_0 / 4 and A_1 / 4 (the layer's grid is the
    image's, so no upsampling). Masked images x * M_0 = [[0, .25], [1, 4]] and
    x * M_1 = [[0, .75], [1, 0]]; the layer of a masked image m is (m, 4 - m).
    Target 0 reads sum(A_0): scores 5.25 and 1.75, weights softmax = sigmoid(+-3.5).
    Target 1 reads A_0 at (0, 1) minus A_0 at (1, 1): scores .25 - 4 and .75 - 0,
    weights sigmoid(-4.5), sigmoid(4.5)."""
    zeros = torch.zeros(2, 2)
    first = torch.stack([torch.ones(2, 2), zeros])
    second = torch.stack([torch.tensor([[0.0, 1.0], [0.0, -1.0]]), zeros])
    model = MaskedByLayer(torch.stack([first, second])).eval()
    e = vlx.explain(model, IMAGE, method="scorecam", targets=[[0, 1]], layer="layer")
    s0, s1 = 1 / (1 + math.exp(-3.5)), 1 / (1 + math.exp(4.5))
    expected_alphas = torch.tensor([[[s0, 1 - s0], [s1, 1 - s1]]])
    torch.testing.assert_close(e.alphas, expected_alphas, rtol=0, atol=1e-6)
    expected = torch.stack([s0 * ACT0 + (1 - s0) * ACT1, s1 * ACT0 + (1 - s1) * ACT1])[None]
    torch.testing.assert_close(e.maps, expected, rtol=0, atol=1e-5)


def test_ablationcam_weights_channels_by_their_relative_drop() -> None:
    """y_0 = sum A_0 + sum A_1 = 7 + 9 = 16: zeroing channel 0 drops it by 7, channel 1 by 9,
    weights 7/16, 9/16: map (7 A_0 + 9 A_1) / 16 = [[2.25, 2.125], [2, 1.75]].
    y_1 = sum A_0 - 2 sum A_1 = -11: drops 7 and -18 over |y| = 11: ReLU((7 A_0 - 18 A_1) / 11)
    is zero but at (1, 1), where it is 28 / 11."""
    ones = torch.ones(2, 2)
    model = MaskedByLayer(torch.stack([torch.stack([ones, ones]),
                                       torch.stack([ones, -2 * ones])])).eval()
    e = vlx.explain(model, IMAGE, method="ablationcam", targets=[[0, 1]], layer="layer")
    torch.testing.assert_close(e.alphas, torch.tensor([[[7 / 16, 9 / 16], [7 / 11, -18 / 11]]]),
                               rtol=0, atol=1e-6)
    expected = torch.tensor([[[[2.25, 2.125], [2.0, 1.75]], [[0.0, 0.0], [0.0, 28 / 11]]]])
    torch.testing.assert_close(e.maps, expected, rtol=0, atol=1e-6)


class Tokens(nn.Module):
    """A transformer-like layer: (N, 1 + 4, 2) tokens, a class token (10, 20) first, then the
    patches with the channels of ``Pair``; the head sums every token's two channels."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        patches = Pair()(image).flatten(2).transpose(1, 2)
        cls = torch.tensor([10.0, 20.0]).expand(len(image), 1, 2)
        return self.layer(torch.cat([cls, patches], dim=1)).sum(dim=(1, 2))[:, None]


def test_ablationcam_zeroes_a_token_layers_channel_at_the_patches_only() -> None:
    """y = (10 + 7) + (20 + 9) = 46; zeroing channel 0 at the patches drops 7 (not 17: the
    class token stays), channel 1 drops 9: map (7 A_0 + 9 A_1) / 46."""
    e = vlx.explain(Tokens().eval(), IMAGE, method="ablationcam", targets=0, layer="layer",
                    to_grid=TokenGrid(prefix=1))
    torch.testing.assert_close(e.alphas, torch.tensor([[[7 / 46, 9 / 46]]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(e.maps[0, 0], (7 * ACT0 + 9 * ACT1) / 46, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", list(CAM_FAMILY))
def test_targets_at_once_equal_one_at_a_time_in_any_batch_of_copies(method) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()
    images = torch.randn(2, 3, 12, 12)
    both = vlx.explain(model, images, method=method, targets=[[0, 3], [2, 1]], layer="3",
                       batch_size=2)
    for t in range(2):
        one = vlx.explain(model, images, method=method, targets=[[0, 3][t], [2, 1][t]],
                          layer="3", batch_size=5)
        torch.testing.assert_close(both.maps[:, t : t + 1], one.maps, rtol=0, atol=1e-6)
        torch.testing.assert_close(both.scores[:, t : t + 1], one.scores, rtol=0, atol=0)
    assert bool(both.maps.isfinite().all())


def test_the_family_is_known_by_name_everywhere() -> None:
    assert set(CAM_FAMILY) <= set(METHODS) and set(COPY_METHODS) <= set(METHODS)
    assert set(ALPHA_METHODS) <= set(METHODS) and set(CLASS_AGNOSTIC) <= set(CAM_FAMILY)
    with pytest.raises(InputError, match="batch_size must be at least 1, got 0"):
        vlx.explain(LinearInLayer(torch.ones(1, 2, 2, 2)).eval(), torch.ones(1, 2, 2, 2),
                    method="scorecam", targets=0, layer="layer", batch_size=0)


@pytest.fixture(scope="module")
def shapes_examples():
    from PIL import Image

    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.task import Example

    world = ShapesWorld(seed=0)
    scenes = [world.scene(SPLITS["test"][0] + i) for i in range(2)]
    return [Example(Image.fromarray(s.image), s.questions()[0].text) for s in scenes]


ADAPTERS = {
    "classify": ("shapes", [["circle", "square"], ["triangle", "circle"]]),
    "caption": ("shapes", None),
    "vqa": ("coattention", [["red", "yes"], ["blue", "no"]]),
    "lstm-cnn": ("lstm-cnn", [["green", "two"], ["circle", "yes"]]),
}


@pytest.mark.parametrize("kind", ADAPTERS)
def test_every_method_runs_through_the_shipped_adapters(kind, shapes_examples) -> None:
    """Every family member, by name, through the task contract: two targets per example at
    once equal each target alone (captions: the first two words of each scene's own caption),
    in batches of copies smaller than the layer's channels."""
    from vlx.tasks.loading import load_task

    model, requested = ADAPTERS[kind]
    task = load_task("vqa" if kind == "lstm-cnn" else kind, model)
    examples = shapes_examples
    if kind == "caption":
        examples = [replace(e, text=" ".join(task.predict(task.prepare([e]), 1)[0][0].name
                                             .split()[:2])) for e in examples]
    batch = task.prepare(examples)
    targets = task.targets(batch, requested)
    assert all(len(row) == 2 for row in targets.rows)
    for method in CAM_FAMILY:
        both = task.explain(batch, targets, method, batch_size=16)
        assert bool(both.maps.isfinite().all()) and both.maps.amax() > 0, method
        for t in range(2):
            single = replace(targets, rows=[[row[t]] for row in targets.rows])
            one = task.explain(batch, single, method, batch_size=16)
            torch.testing.assert_close(both.maps[:, t : t + 1], one.maps, rtol=1e-4, atol=1e-5,
                                       msg=f"{method} target {t}")
