"""Guided backprop, deconvolution (vlx.methods.guided, vlx.rectifier) and Guided Grad-CAM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlx.cam import GradCAM
from vlx.methods.guided import InputGradients, deconvolution, guided_backprop, guided_gradcam
from vlx.rectifier import RectifierRule

T = torch.tensor


# --- 2. Exact input gradients ------------------------------------------------------------


class TwoLayer(nn.Module):
    """2x2 image -> flatten -> linear(4, 3) -> ReLU -> linear(3, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 3, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(T([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, -1]]))
            self.fc2.weight.copy_(T([[2.0, 3.0, -1.0], [-1.0, 1.0, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


# x = [1, -2, 3, 0.5] (flattened)
# rows of fc1: r0 = [1, 0, 0, 1], r1 = [0, 1, 0, 0], r2 = [0, 0, 1, -1]
# ReLU input z = [1 + 0.5, -2, 3 - 0.5] = [1.5, -2, 2.5]  -> unit 1 is negative in the forward
# class 0, gradient at the ReLU output g = [2, 3, -1]:
#   unit 0: z > 0, g > 0 (passes both); unit 1: z < 0, g > 0 (guided 0, deconv passes);
#   unit 2: z > 0, g < 0 (both 0)
#   plain:  g * (z > 0)       = [2, 0, -1] -> 2 r0 - r2 = [2, 0, -1, 3]
#   guided: relu(g) * (z > 0) = [2, 0, 0]  -> 2 r0     = [2, 0, 0, 2]
#   deconv: relu(g)           = [2, 3, 0]  -> 2 r0 + 3 r1 = [2, 3, 0, 2]
# class 1, g = [-1, 1, 0.5]:
#   guided: [0, 0, 0.5] -> 0.5 r2 = [0, 0, 0.5, -0.5];  deconv: [0, 1, 0.5] -> [0, 1, 0.5, -0.5]
# scores: relu(z) = [1.5, 0, 2.5]; y0 = 3 + 0 - 2.5 = 0.5; y1 = -1.5 + 0 + 1.25 = -0.25
X = T([[[[1.0, -2.0], [3.0, 0.5]]]])
GUIDED = T([[[[[2.0, 0.0], [0.0, 2.0]]], [[[0.0, 0.0], [0.5, -0.5]]]]])
DECONV = T([[[[[2.0, 3.0], [0.0, 2.0]]], [[[0.0, 1.0], [0.5, -0.5]]]]])


@pytest.mark.parametrize(("function", "expected", "method"), [
    (guided_backprop, GUIDED, "guided-backprop"),
    (deconvolution, DECONV, "deconvolution"),
])
def test_exact_input_gradients(function, expected, method) -> None:
    e = function(TwoLayer().eval(), X, targets=[[0, 1]])
    assert e.channels.shape == (1, 2, 1, 2, 2)
    torch.testing.assert_close(e.channels, expected, rtol=0, atol=0)
    torch.testing.assert_close(e.maps, expected.abs()[:, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(e.scores, T([[0.5, -0.25]]), rtol=0, atol=1e-6)
    assert e.method == method and e.targets == [[0, 1]]


def test_plain_gradient_is_unchanged_outside_the_rule() -> None:
    model = TwoLayer().eval()
    x = X.clone().requires_grad_(True)
    model(x)[0, 0].backward()
    assert x.grad.tolist() == [[[[2.0, 0.0], [-1.0, 3.0]]]]  # plain: [2, 0, -1, 3]


def test_input_index_picks_the_attributed_input() -> None:
    class Second(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = TwoLayer()

        def forward(self, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * scale

    e = InputGradients(Second().eval(), "deconv")(T([[1.0]]), X, targets=[[0, 1]], input_index=1)
    torch.testing.assert_close(e.channels, DECONV, rtol=0, atol=0)


def test_unknown_rule_is_rejected() -> None:
    with pytest.raises(ValueError, match="'zeiler'.*guided, deconv"):
        InputGradients(TwoLayer(), "zeiler")
    with pytest.raises(ValueError, match="'zeiler'"):
        RectifierRule("zeiler")


# --- 3. Every rectifier spelling follows the rule; the model is left alone -----------------


ACTIVATIONS = {
    "nn.ReLU": (lambda: nn.ReLU(), None),
    "nn.ReLU-inplace": (lambda: nn.ReLU(inplace=True), None),
    "nn.ReLU6": (lambda: nn.ReLU6(), 6.0),
    "nn.ReLU6-inplace": (lambda: nn.ReLU6(inplace=True), 6.0),
    "F.relu": (lambda: F.relu, None),
    "F.relu-inplace": (lambda: lambda x: F.relu(x, inplace=True), None),
    "torch.relu": (lambda: torch.relu, None),
    "Tensor.relu": (lambda: torch.Tensor.relu, None),
    "F.relu6": (lambda: F.relu6, 6.0),
}


class MLP(nn.Module):
    """3x3 image -> linear(9, 6) -> act -> linear(6, 5) -> act -> linear(5, 3)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(6)
        self.fc1 = nn.Linear(9, 6)
        self.fc2 = nn.Linear(6, 5)
        self.fc3 = nn.Linear(5, 3)
        with torch.no_grad():
            for layer in (self.fc1, self.fc2, self.fc3):
                layer.weight.copy_(2 * torch.randn(layer.weight.shape, generator=generator))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
        make, _ = ACTIVATIONS[kind]
        self.act1, self.act2 = make(), make()  # submodules, or plain functions called in forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x.flatten(1))))))


def reference(model: MLP, x: torch.Tensor, classes: list[int], rule: str, upper: float | None):
    """The rectifier rules written out by hand: (N, T, 1, 3, 3) input gradients."""
    w1, b1 = model.fc1.weight.detach(), model.fc1.bias.detach()
    w2, b2 = model.fc2.weight.detach(), model.fc2.bias.detach()
    w3 = model.fc3.weight.detach()
    upper_bound = float("inf") if upper is None else upper
    z1 = x.flatten(1) @ w1.T + b1
    z2 = z1.clamp(0, upper_bound) @ w2.T + b2

    def backward(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        positive = grad.clamp(min=0)
        if rule == "guided":
            positive = positive * ((z > 0) & (z < upper_bound))
        return positive

    out = []
    for c in classes:
        g2 = backward(w3[c].expand(x.shape[0], -1), z2)
        g1 = backward(g2 @ w2, z1)
        out.append((g1 @ w1).reshape(x.shape))
    return torch.stack(out, dim=1), z1, z2


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_every_rectifier_spelling_follows_the_rule(kind, rule, watch) -> None:
    model = MLP(kind).eval()
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(4))
    classes = [0, 2]
    expected, z1, z2 = reference(model, x, classes, rule, ACTIVATIONS[kind][1])
    z = torch.cat([z1.flatten(), z2.flatten()])
    # the test is only meaningful if every regime occurs: z < 0, 0 < z < 6, z > 6
    assert (z < 0).any() and ((z > 0) & (z < 6)).any() and (z > 6).any()
    w = watch(model, x)
    first = InputGradients(model, rule)(x, targets=[classes, classes])
    second = InputGradients(model, rule)(x, targets=[classes, classes])
    w.check()
    assert (expected.flatten(2).abs().sum(-1) > 0).all()  # every image-target is non-zero
    torch.testing.assert_close(first.channels, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.channels, first.channels, rtol=0, atol=0)  # no accumulation
    torch.testing.assert_close(first.scores, model(x).detach()[:, classes], rtol=0, atol=0)


def test_relu6_guided_blocks_activations_above_six() -> None:
    # x = [1, 1]; fc1 = diag(10, 2): z = [10, 2] -> ReLU6 -> [6, 2]; fc2 = [1, 1]
    # guided: unit 0 has z = 10 > 6 -> 0; unit 1 passes -> dx = [0 * 10, 1 * 2] = [0, 2]
    # deconv: both pass (gradient 1 > 0) -> dx = [10, 2]
    # nn.ReLU in place of ReLU6, guided: both pass -> [10, 2]
    def model(act: nn.Module) -> nn.Module:
        net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), act,
                            nn.Linear(2, 1, bias=False))
        with torch.no_grad():
            net[1].weight.copy_(T([[10.0, 0.0], [0.0, 2.0]]))
            net[3].weight.copy_(T([[1.0, 1.0]]))
        return net.eval()

    def gradients(function, act: nn.Module) -> list[float]:
        return function(model(act), T([[[[1.0, 1.0]]]]), targets=0).channels.flatten().tolist()

    for inplace in (False, True):
        assert gradients(guided_backprop, nn.ReLU6(inplace)) == [0.0, 2.0]
        assert gradients(deconvolution, nn.ReLU6(inplace)) == [10.0, 2.0]
    assert gradients(guided_backprop, nn.ReLU()) == [10.0, 2.0]


def test_hardtanh_other_than_relu6_keeps_its_gradient() -> None:
    # Hardtanh(-1, 1) is not a rectifier: its plain gradient is kept (1 inside, 0 outside).
    net = nn.Sequential(nn.Flatten(), nn.Hardtanh(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[2].weight.copy_(T([[-3.0, 2.0]]))
    e = guided_backprop(net.eval(), T([[[[0.5, 4.0]]]]), targets=0)
    assert e.channels.flatten().tolist() == [-3.0, 0.0]


def test_images_are_explained_independently() -> None:
    model = MLP("nn.ReLU").eval()
    x = torch.randn(3, 1, 3, 3, generator=torch.Generator().manual_seed(5))
    rows = [[0, 1], [2, 0], [1, 2]]
    together = guided_backprop(model, x, targets=rows)
    for i, row in enumerate(rows):
        alone = guided_backprop(model, x[i : i + 1], targets=[row])
        assert alone.channels.abs().sum() > 0
        torch.testing.assert_close(together.channels[i], alone.channels[0], rtol=1e-6, atol=1e-6)


# --- 5. Hygiene after an exception ---------------------------------------------------------


def test_exception_pops_the_mode_and_leaves_model_clean(watch) -> None:
    model = MLP("nn.ReLU-inplace").eval()
    x = torch.randn(1, 1, 3, 3)
    w = watch(model, x)

    def bad_target(outputs):
        raise IndexError("no such word")

    with pytest.raises(IndexError, match="no such word"):
        guided_backprop(model, x, targets=bad_target)
    w.check()
    # a plain F.relu backward afterwards: gradient at a positive input passes even if negative
    z = T([-1.0, 2.0, 3.0], requires_grad=True)
    F.relu(z).backward(T([5.0, -1.0, 4.0]))
    assert z.grad.tolist() == [0.0, -1.0, 4.0]


# --- 3. Guided Grad-CAM --------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(a.flatten(1))


def test_guided_gradcam_is_guided_backprop_times_upsampled_map(watch) -> None:
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    rows = [[0, 3], [1, 2]]
    w = watch(model, x)
    combined = guided_gradcam(model, x, layer="conv2", targets=rows)
    w.check()
    with GradCAM(model, "conv2") as cam:
        coarse = cam(x, targets=rows)
    guided = guided_backprop(model, x, targets=rows)
    assert coarse.maps.shape == (2, 2, 3, 3) and (coarse.maps > 0).any()
    up = F.interpolate(coarse.maps.flatten(0, 1)[:, None], size=(6, 6), mode="bilinear",
                       align_corners=False).reshape(2, 2, 1, 6, 6)
    expected = guided.channels * up
    assert expected.abs().sum() > 0
    torch.testing.assert_close(combined.channels, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(combined.maps, expected.abs().amax(dim=2), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(combined.alphas, coarse.alphas, rtol=0, atol=0)
    torch.testing.assert_close(combined.scores, coarse.scores, rtol=0, atol=0)
    assert combined.targets == rows and combined.layer == "conv2"
    assert combined.method == "guided-gradcam"


def test_guided_gradcam_explains_the_argmax_in_both_factors() -> None:
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(7))
    top = model(x).argmax(1)
    auto = guided_gradcam(model, x, layer="conv2")
    given = guided_gradcam(model, x, layer="conv2", targets=[[int(c)] for c in top])
    assert auto.targets == [[int(c)] for c in top]
    torch.testing.assert_close(auto.channels, given.channels, rtol=0, atol=0)
