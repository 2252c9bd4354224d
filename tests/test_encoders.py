"""The ShapesWorld encoder: strided and dilated forms of the same weights agree."""

from __future__ import annotations

import pytest
import torch

from vlx.models.encoders import ResNetEncoder, coordinate_channels


@pytest.mark.parametrize("coordinates", [False, True])
def test_stride_4_computes_the_stride_8_map_at_every_other_position(coordinates: bool) -> None:
    torch.manual_seed(0)
    coarse = ResNetEncoder((8, 8, 16, 16), coordinates=coordinates).eval()
    for module in coarse.modules():  # non-trivial statistics, so BatchNorm is not an identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    fine = ResNetEncoder((8, 8, 16, 16), coordinates=coordinates, stride=4).eval()
    fine.load_state_dict(coarse.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        sparse, dense = coarse(images), fine(images)
    assert sparse.shape == (2, 16, 8, 8) and dense.shape == (2, 16, 16, 16)
    torch.testing.assert_close(dense[..., ::2, ::2], sparse, rtol=1e-5, atol=1e-5)
    between = (dense[..., 1::2, 1::2] - sparse).abs().amax()
    assert between > 1e-2  # the positions in between are new evaluations, not copies


def test_coordinates_run_from_minus_one_to_one_over_the_stride_8_cells() -> None:
    coarse = coordinate_channels(torch.zeros(1, 1, 16, 16))
    torch.testing.assert_close(coarse[0, 0, 0], torch.linspace(-1, 1, 16))
    torch.testing.assert_close(coarse[0, 1, :, 0], torch.linspace(-1, 1, 16))
    fine = coordinate_channels(torch.zeros(1, 1, 32, 32), density=2)
    torch.testing.assert_close(fine[0, :, ::2, ::2], coarse[0])
    torch.testing.assert_close(fine[0, 0, 0, 1], (coarse[0, 0, 0, 0] + coarse[0, 0, 0, 1]) / 2)


def test_unsupported_stride_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="stride 16 is not supported; valid: 8, 4"):
        ResNetEncoder(stride=16)
