"""Similarity measures of the sanity checks against scipy and scikit-image, and facts by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlx.evaluate.similarity import (
    MEASURES,
    absolute_spearman,
    hog,
    hog_similarity,
    spearman,
    ssim,
)

SHAPES = [(32, 32), (28, 40), (64, 64)]


def random_pair(shape: tuple[int, int], levels: int | None, seed: int) -> list[torch.Tensor]:
    """Two maps, signed like raw gradients; quantised to ``levels`` values to make ties."""
    generator = torch.Generator().manual_seed(seed)
    maps = [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(2)]
    return [m if levels is None else (m * levels / 4).round() for m in maps]


def unit(map: torch.Tensor) -> np.ndarray:
    values = map.numpy()
    return (values - values.min()) / (values.max() - values.min())


CASES = [(shape, levels) for shape in SHAPES for levels in (None, 5)]
CASE_IDS = [f"{h}x{w}-{'ties' if levels else 'continuous'}" for (h, w), levels in CASES]


@pytest.mark.parametrize(("shape", "levels"), CASES, ids=CASE_IDS)
def test_rank_correlations_match_scipy(shape: tuple[int, int], levels: int | None) -> None:
    stats = pytest.importorskip("scipy.stats")
    a, b = random_pair(shape, levels, seed=sum(shape))
    expected = stats.spearmanr(a.numpy().ravel(), b.numpy().ravel()).statistic
    expected_abs = stats.spearmanr(a.abs().numpy().ravel(), b.abs().numpy().ravel()).statistic
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert absolute_spearman(a, b) == pytest.approx(expected_abs, abs=1e-12)


@pytest.mark.parametrize(("shape", "levels"), CASES, ids=CASE_IDS)
def test_ssim_matches_skimage(shape: tuple[int, int], levels: int | None) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = random_pair(shape, levels, seed=sum(shape))
    expected = metrics.structural_similarity(unit(a), unit(b), data_range=1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("shape", "levels"), CASES, ids=CASE_IDS)
def test_hog_matches_skimage(shape: tuple[int, int], levels: int | None) -> None:
    feature = pytest.importorskip("skimage.feature")
    a, b = random_pair(shape, levels, seed=sum(shape))
    expected_a, expected_b = feature.hog(unit(a)), feature.hog(unit(b))
    # skimage sums each cell in single precision: agreement is to ~1e-7, not bitwise
    np.testing.assert_allclose(hog(torch.from_numpy(unit(a))).numpy(), expected_a, atol=1e-5)
    expected = np.corrcoef(expected_a, expected_b)[0, 1]
    assert hog_similarity(a, b) == pytest.approx(expected, abs=1e-5)


def test_hog_does_not_interpolate_between_orientation_bins() -> None:
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    for degrees, only_bin in [(19.0, 0), (21.0, 1), (179.0, 8)]:
        angle = math.radians(degrees)
        ramp = math.sin(angle) * rows + math.cos(angle) * cols
        # the centre cell of the one block: no border pixel, where skimage zeroes one gradient axis
        centre = hog(ramp).reshape(3, 3, 9)[1, 1]
        others = [i for i in range(9) if i != only_bin]
        assert centre[only_bin] > 0
        assert centre[others].abs().max() == 0


def test_spearman_facts() -> None:
    a, _ = random_pair((8, 8), None, seed=0)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert absolute_spearman(a, -a) == pytest.approx(1.0)
    assert math.isnan(spearman(torch.full((8, 8), 0.5), a))


def test_spearman_with_ties_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0], [2.0, 3.0]])  # ranks 1, 2.5, 2.5, 4
    b = torch.tensor([[1.0, 3.0], [2.0, 4.0]])  # ranks 1, 3, 2, 4
    # centred ranks (-1.5, 0, 0, 1.5) and (-1.5, 0.5, -0.5, 1.5): products sum to 4.5,
    # squares to 4.5 and 5, so rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman(a, b) == pytest.approx(math.sqrt(0.9))


def test_a_map_is_fully_similar_to_itself() -> None:
    a, _ = random_pair((32, 32), None, seed=1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert hog_similarity(a, a) == pytest.approx(1.0)


def test_a_constant_map_has_no_hog_correlation() -> None:
    a, _ = random_pair((24, 24), None, seed=2)
    assert math.isnan(hog_similarity(torch.ones(24, 24), a))


def test_ssim_and_hog_ignore_a_positive_scale() -> None:
    a, b = random_pair((32, 40), 5, seed=3)
    assert ssim(7.5 * a, b) == pytest.approx(ssim(a, b), abs=1e-12)
    assert hog_similarity(7.5 * a, b) == pytest.approx(hog_similarity(a, b), abs=1e-12)


def test_maps_too_small_or_mismatched_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 24x24"):
        hog(torch.zeros(23, 40))
    with pytest.raises(ValueError, match="at least 24x24"):
        hog_similarity(torch.rand(40, 20), torch.rand(40, 20))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(6, 10), torch.rand(6, 10))
    with pytest.raises(ValueError, match="one shape"):
        spearman(torch.rand(4, 4), torch.rand(4, 5))


def test_measures_by_name() -> None:
    assert MEASURES == {
        "spearman": spearman,
        "abs-spearman": absolute_spearman,
        "ssim": ssim,
        "hog": hog_similarity,
    }
