"""How alike two maps are: the measures of the sanity checks (Adebayo et al. 2018).

The sanity checks randomize a model's weights and compare the map before and after; a method
whose map barely changes does not depend on what the model learnt. They report rank
correlation (with and without sign, since randomization may flip a method's sign), SSIM and
the correlation of HOG descriptors. SSIM and HOG follow scikit-image's defaults, the
implementation the paper used, so numbers can be compared with it; only torch runs here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vlx.evaluate.faithfulness import rank_correlation
from vlx.explanation import normalize

SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
HOG_ORIENTATIONS = 9
HOG_CELL = 8
HOG_BLOCK = 3
HOG_EPS = 1e-5
HOG_CLIP = 0.2


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"maps must be 2-D and of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of the pixels of two (H, W) maps, ties at their average
    rank. A constant map has no ranks: NaN."""
    _check_pair(a, b)
    return float(rank_correlation(a, b))


def absolute_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of ``|a|`` and ``|b|``: blind to a flipped sign."""
    return spearman(a.abs(), b.abs())


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean structural similarity (Wang et al. 2004) of two (H, W) maps, each scaled to
    [0, 1] first so the data range is 1.

    As scikit-image's ``structural_similarity`` with ``data_range=1``: means and sample
    (co)variances over 7x7 uniform windows, averaged only where the window fits inside the
    map (skimage crops the 3-pixel border its filter padded).
    """
    _check_pair(a, b)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs maps of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape)}"
        )
    x, y = (normalize(m.double())[None, None] for m in (a, b))

    def window_mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    n = SSIM_WINDOW**2
    correction = n / (n - 1)
    mean_x, mean_y = window_mean(x), window_mean(y)
    var_x = correction * (window_mean(x * x) - mean_x**2)
    var_y = correction * (window_mean(y * y) - mean_y**2)
    cov = correction * (window_mean(x * y) - mean_x * mean_y)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(index.mean())


def hog(map: torch.Tensor) -> torch.Tensor:
    """HOG descriptor (Dalal & Triggs 2005) of an (H, W) map, flattened block by block.

    As scikit-image's ``feature.hog`` defaults: central differences with zero gradient on
    the border rows and columns; 9 unsigned orientation bins over [0, 180) degrees, each
    pixel giving its whole magnitude to one bin (no interpolation; an angle that rounds to
    180 falls in none); each 8x8 cell holds the mean vote, pixels past the last whole cell
    are dropped; 3x3-cell blocks at every cell offset are L2-Hys normalised (clipped at 0.2).
    A map smaller than one block is a ``ValueError``.
    """
    if map.dim() != 2:
        raise ValueError(f"map must be 2-D, got shape {tuple(map.shape)}")
    side = HOG_CELL * HOG_BLOCK
    height, width = map.shape
    if height < side or width < side:
        raise ValueError(f"HOG needs a map of at least {side}x{side}, got {height}x{width}")
    image = map.double()
    g_row = torch.zeros_like(image)
    g_row[1:-1] = image[2:] - image[:-2]
    g_col = torch.zeros_like(image)
    g_col[:, 1:-1] = image[:, 2:] - image[:, :-2]
    magnitude = torch.hypot(g_row, g_col)
    angle = torch.rad2deg(torch.atan2(g_row, g_col)) % 180
    # bin i holds angles in [20 i, 20 (i + 1)); index 9 (an angle of 180) votes nowhere
    edges = torch.arange(1, HOG_ORIENTATIONS + 1, dtype=image.dtype, device=image.device)
    bins = torch.bucketize(angle, edges * (180 / HOG_ORIENTATIONS), right=True)
    rows, cols = height // HOG_CELL, width // HOG_CELL
    kept = (slice(0, rows * HOG_CELL), slice(0, cols * HOG_CELL))
    votes = F.one_hot(bins[kept], HOG_ORIENTATIONS + 1)[..., :HOG_ORIENTATIONS]
    votes = votes * magnitude[kept][..., None]
    cells = votes.reshape(rows, HOG_CELL, cols, HOG_CELL, HOG_ORIENTATIONS).mean(dim=(1, 3))
    # (block row, block col, orientation, cell row, cell col) -> orientation last
    blocks = cells.unfold(0, HOG_BLOCK, 1).unfold(1, HOG_BLOCK, 1).permute(0, 1, 3, 4, 2)

    def l2(x: torch.Tensor) -> torch.Tensor:
        return x / (x.square().sum(dim=(-3, -2, -1), keepdim=True) + HOG_EPS**2).sqrt()

    return l2(l2(blocks).clamp(max=HOG_CLIP)).flatten()


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the HOG descriptors of two (H, W) maps scaled to [0, 1]; NaN
    where a descriptor is constant (a constant map has no gradients)."""
    _check_pair(a, b)
    x, y = (hog(normalize(m.double())) for m in (a, b))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.square().sum() * y.square().sum()).sqrt())


MEASURES: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "spearman": spearman,
    "abs-spearman": absolute_spearman,
    "ssim": ssim,
    "hog": hog_similarity,
}
