"""ROAD: noisy linear imputation checked against hand-solved systems, and the scores' order."""

from __future__ import annotations

import pytest
import torch

from vlx.evaluate.road import noisy_linear_imputation, road_scores

SMALL = torch.tensor([[[1.0, 2.0, 0.0], [4.0, 9.0, 6.0], [0.0, 8.0, 3.0]]])  # (1, 3, 3)


def mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.bool)
    for y, x in pixels:
        out[y, x] = True
    return out


def checkerboard(size: int) -> torch.Tensor:
    """(1, size, size) of 0 and 1: a fill mixes both, so it changes every removed pixel."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy + xx) % 2).double()[None]


def test_the_centre_is_the_weighted_mean_of_its_eight_neighbours() -> None:
    out = noisy_linear_imputation(SMALL, mask((3, 3), (1, 1)), noise=0.0)
    # direct 2 + 4 + 6 + 8 = 20, diagonal 1 + 0 + 0 + 3 = 4: 20 / 6 + 4 / 12 = 11 / 3
    assert out[0, 1, 1].item() == pytest.approx(11 / 3)


def test_weights_are_renormalised_at_the_border() -> None:
    corner = noisy_linear_imputation(SMALL, mask((3, 3), (0, 0)), noise=0.0)
    # direct 2 and 4, diagonal 9: (2 / 6 + 4 / 6 + 9 / 12) / (1 / 6 + 1 / 6 + 1 / 12) = 21 / 5
    assert corner[0, 0, 0].item() == pytest.approx(21 / 5)
    edge = noisy_linear_imputation(SMALL, mask((3, 3), (0, 1)), noise=0.0)
    # direct 1, 0, 9, diagonal 4, 6: (10 / 6 + 10 / 12) / (3 / 6 + 2 / 12) = 15 / 4
    assert edge[0, 0, 1].item() == pytest.approx(15 / 4)


def test_adjacent_removed_pixels_are_solved_jointly() -> None:
    image = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 0.0, 0.0, 6.0], [7.0, 8.0, 9.0, 12.0]]])
    out = noisy_linear_imputation(image, mask((3, 4), (1, 1), (1, 2)), noise=0.0)
    x, y = out[0, 1, 1].item(), out[0, 1, 2].item()
    # x = (2 + 8 + 5 + y) / 6 + (1 + 3 + 7 + 9) / 12, y = (3 + 9 + 6 + x) / 6 + (2 + 4 + 8 + 12) / 12
    s, t = 15 / 6 + 20 / 12, 18 / 6 + 26 / 12
    # x - y / 6 = s and y - x / 6 = t: x = (36 s + 6 t) / 35 = 181 / 35, y = 211 / 35
    assert x == pytest.approx((36 * s + 6 * t) / 35) == pytest.approx(181 / 35)
    assert y == pytest.approx((36 * t + 6 * s) / 35) == pytest.approx(211 / 35)
    assert x == pytest.approx((2 + 8 + 5 + y) / 6 + (1 + 3 + 7 + 9) / 12)
    assert y == pytest.approx((3 + 9 + 6 + x) / 6 + (2 + 4 + 8 + 12) / 12)


def test_a_linear_ramp_is_imputed_exactly_in_the_interior() -> None:
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(15.0), indexing="ij")
    image = torch.stack([0.3 * xx - 0.2 * yy + 1.0, -0.1 * xx + 0.5 * yy, 0.05 * xx + 0.07 * yy])
    removed = torch.zeros(12, 15, dtype=torch.bool)
    removed[2:9, 3:12] = True
    removed[4, 1] = removed[10, 13] = True
    out = noisy_linear_imputation(image, removed, noise=0.0)
    assert torch.allclose(out, image, atol=1e-5, rtol=0)
    assert not torch.equal(noisy_linear_imputation(image, removed, noise=0.01), image)


def test_kept_pixels_are_bit_exact_and_the_noise_has_the_requested_std() -> None:
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    removed = torch.zeros(64, 64, dtype=torch.bool)
    removed[8:56, 8:56] = True
    exact = noisy_linear_imputation(image, removed, noise=0.0)
    noisy = noisy_linear_imputation(image, removed, 0.1, torch.Generator().manual_seed(2))
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])
    assert torch.equal(exact[:, ~removed], image[:, ~removed])
    difference = (noisy - exact)[:, removed]  # 3 * 48 * 48 = 6912 draws
    assert difference.std().item() == pytest.approx(0.1, rel=0.05)
    assert abs(difference.mean().item()) < 0.01
    again = noisy_linear_imputation(image, removed, 0.1, torch.Generator().manual_seed(2))
    other = noisy_linear_imputation(image, removed, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    assert not torch.equal(noisy, other)


def test_nothing_removed_is_a_copy_and_everything_removed_is_refused() -> None:
    out = noisy_linear_imputation(SMALL, torch.zeros(3, 3, dtype=torch.bool))
    assert torch.equal(out, SMALL) and out.data_ptr() != SMALL.data_ptr()
    with pytest.raises(ValueError, match="every pixel is removed"):
        noisy_linear_imputation(SMALL, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        noisy_linear_imputation(SMALL, torch.zeros(3, 4, dtype=torch.bool))


def test_morf_falls_below_lerf_on_a_bright_blob() -> None:
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = torch.exp(-((yy - 12) ** 2 + (xx - 18) ** 2) / 20)
    image = torch.stack([blob, 0.5 * blob])

    def mean(batch: torch.Tensor) -> torch.Tensor:
        return batch.mean(dim=(1, 2, 3))

    morf = road_scores(mean, image, blob, order="morf")
    lerf = road_scores(mean, image, blob, order="lerf")
    assert morf.shape == lerf.shape == (9,)
    assert (morf < lerf).all()
    assert (morf < mean(image[None])).all()
    assert morf[-1] < 0.5 * morf[0]


def test_exactly_the_ranked_pixels_are_removed() -> None:
    image = checkerboard(7)
    saliency = torch.rand(7, 7, generator=torch.Generator().manual_seed(4))
    fractions = (0.1, 0.3, 0.9)  # round(f * 49): 5, 15, 44

    def changed(batch: torch.Tensor) -> torch.Tensor:
        return (batch != image).any(dim=1).flatten(1)  # (F, H * W)

    for order, ranking in (
        ("morf", torch.argsort(-saliency.flatten())),
        ("lerf", torch.argsort(saliency.flatten())),
    ):
        masks = road_scores(changed, image, saliency, fractions, order, noise=0.0)
        assert masks.sum(dim=1).tolist() == [5, 15, 44]
        for row, count in zip(masks, (5, 15, 44), strict=True):
            assert set(row.nonzero().flatten().tolist()) == set(ranking[:count].tolist())


def test_ties_keep_row_major_order() -> None:
    image = checkerboard(4)

    def changed(batch: torch.Tensor) -> torch.Tensor:
        return (batch != image).any(dim=1).flatten(1)

    for order in ("morf", "lerf"):
        masks = road_scores(changed, image, torch.ones(4, 4), (0.25,), order, noise=0.0)
        assert masks[0].tolist() == [True] * 4 + [False] * 12


def test_noise_is_seeded_per_fraction() -> None:
    image = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(5))
    saliency = torch.rand(10, 10, generator=torch.Generator().manual_seed(6))

    def identity(batch: torch.Tensor) -> torch.Tensor:
        return batch

    both = road_scores(identity, image, saliency, (0.2, 0.5), seed=7)
    assert torch.equal(both, road_scores(identity, image, saliency, (0.2, 0.5), seed=7))
    assert torch.equal(both[:1], road_scores(identity, image, saliency, (0.2,), seed=7))
    assert not torch.equal(both, road_scores(identity, image, saliency, (0.2, 0.5), seed=8))


def test_bad_arguments_are_refused() -> None:
    def total(batch: torch.Tensor) -> torch.Tensor:
        return batch.sum(dim=(1, 2, 3))

    saliency = torch.rand(3, 3)
    with pytest.raises(ValueError, match="morf, lerf"):
        road_scores(total, SMALL, saliency, order="random")
    for fractions in ((0.0,), (0.5, 1.0), (1.5,), ()):
        with pytest.raises(ValueError, match="fractions"):
            road_scores(total, SMALL, saliency, fractions)
    with pytest.raises(ValueError, match="saliency must be"):
        road_scores(total, SMALL, torch.rand(4, 3))
    with pytest.raises(ValueError, match="saliency must be"):
        road_scores(total, SMALL[0], saliency)
