"""Targeted PGD: reaches the target, stays in the epsilon ball and the [0, 1] box, in pixel units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlx.adversarial import targeted_pgd

MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.5, 0.2)


def linear_model() -> nn.Module:
    """Two classes over 3x2x2 pixels with hand-set weights: score(1) - score(0) = w . x."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = torch.tensor([1.0, -2.0, 0.5, -1.0, 3.0, 1.0,
                                           -1.0, 2.0, -0.5, 1.0, -3.0, 2.0])
        model[1].bias.zero_()
    return model.eval()


def test_linear_model_moves_every_pixel_by_epsilon_toward_the_target() -> None:
    # For a linear model the target's loss gradient has a fixed sign per pixel (the sign of
    # w / std), so enough sign steps push every pixel to the edge of its epsilon interval,
    # clipped by the [0, 1] box: clamp(x + eps * sign(w), 0, 1) exactly.
    model = linear_model()
    pixels = torch.tensor([0.5, 0.2, 1.0, 0.0, 0.3, 0.99,
                           0.01, 0.6, 0.4, 0.7, 0.8, 0.5]).reshape(1, 3, 2, 2)
    epsilon = 4 / 255
    sign = model[1].weight[1].sign().reshape(1, 3, 2, 2)
    expected = (pixels + epsilon * sign).clamp(0, 1)
    adversarial = targeted_pgd(model, pixels, [1], MEAN, STD, epsilon, steps=10,
                               step_size=epsilon / 2)
    assert torch.allclose(adversarial, expected, atol=1e-7)
    # the pixel at 1.0 cannot go up, the pixel at 0.0 cannot go down, 0.99 only reaches 1.0
    assert adversarial[0, 0, 1, 0] == 1.0 and adversarial[0, 0, 1, 1] == 0.0
    assert adversarial[0, 1, 0, 1] == 1.0


def test_epsilon_is_in_pixel_units_not_normalised_units() -> None:
    # Were epsilon applied after normalisation, pixels would move by epsilon * std (at most
    # 0.5 * epsilon here): every unclipped pixel must move by the full epsilon.
    model = linear_model()
    pixels = torch.full((1, 3, 2, 2), 0.5)
    adversarial = targeted_pgd(model, pixels, [1], MEAN, STD, 0.1, steps=4, step_size=0.05)
    assert torch.allclose((adversarial - pixels).abs(), torch.full_like(pixels, 0.1))


def colour_cnn() -> nn.Module:
    """Class 0 where the image is redder than green on average, class 1 where greener: a 1x1
    conv (red - green, green - red on the normalised input), ReLU, global average pooling."""
    model = nn.Sequential(
        nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2, 2, bias=False),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])[..., None, None])
        model[4].weight.copy_(torch.eye(2) * 10)
    return model.eval()


def test_reaches_the_target_on_a_tiny_cnn_within_the_ball_and_the_box() -> None:
    torch.manual_seed(0)
    pixels = torch.rand(3, 3, 8, 8) * 0.2 + 0.4
    pixels[:, 0] = pixels[:, 1] + 0.02  # red a little above green: class 0
    pixels[0, :, :2] = 0.0  # pixels on the box's edges must stay inside it
    pixels[1, :, :2] = 1.0
    mean, std = (0.5, 0.5, 0.4), (0.25, 0.25, 0.2)  # red - green keeps its sign normalised
    model = colour_cnn()

    def classes(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model((x - torch.tensor(mean).view(1, 3, 1, 1))
                         / torch.tensor(std).view(1, 3, 1, 1)).argmax(dim=-1)

    assert classes(pixels).tolist() == [0, 0, 0]
    epsilon = 8 / 255  # red down and green up by 8/255 each outweighs the 0.02 lead
    adversarial = targeted_pgd(model, pixels, [1, 1, 1], mean, std, epsilon, steps=20)
    assert classes(adversarial).tolist() == [1, 1, 1]
    assert (adversarial - pixels).abs().max() <= epsilon + 1e-6
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    # 1/255 each way cannot close a 0.02 lead: the ball, not the step count, bounds the attack
    too_small = targeted_pgd(model, pixels, [1, 1, 1], mean, std, 1 / 255, steps=20)
    assert classes(too_small).tolist() == [0, 0, 0]


def test_zero_steps_returns_the_clean_image_and_leaves_the_input_alone() -> None:
    pixels = torch.rand(2, 3, 2, 2)
    copy = pixels.clone()
    out = targeted_pgd(linear_model(), pixels, [1, 0], MEAN, STD, 0.1, steps=0)
    assert torch.equal(out, copy) and torch.equal(pixels, copy)
    moved = targeted_pgd(linear_model(), pixels, [1, 0], MEAN, STD, 0.1, steps=2)
    assert torch.equal(pixels, copy) and not torch.equal(moved, copy)


@pytest.mark.parametrize(
    ("pixels", "targets", "message"),
    [
        (torch.rand(1, 3, 2, 2) + 1.0, [1], "must lie in \\[0, 1\\]"),
        (torch.rand(1, 1, 2, 2), [1], "must be \\(N, 3, H, W\\)"),
        (torch.rand(2, 3, 2, 2), [1], "got 1 targets for 2 images"),
    ],
)
def test_bad_inputs_are_clear_errors(pixels, targets, message) -> None:
    with pytest.raises(ValueError, match=message):
        targeted_pgd(linear_model(), pixels, targets, MEAN, STD, 0.1, steps=1)
