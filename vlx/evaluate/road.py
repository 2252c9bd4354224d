"""ROAD (Rong et al., ICML 2022): remove pixels in a map's order and debias the removal.

Deletion curves replace removed pixels with a constant, but the shape of the replaced region is
itself information: a model can read the class from the mask's outline, so the score change
mixes what the removed pixels held with what their arrangement leaks. ROAD fills them by noisy
linear imputation instead: each removed pixel is the weighted mean of its 8 neighbours, all
removed pixels solved jointly, plus a little Gaussian noise. A fill that continues its
surroundings smoothly says next to nothing about where the mask was, so the score change
measures the information removed, and no retraining is needed to see it.

MoRF (most relevant first) removes the most salient pixels first: a faithful map makes the
score fall fast, lower is better. LeRF (least relevant first) removes the least salient first:
the score should hold, higher is better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
ORDERS = ("morf", "lerf")
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# (dy, dx, weight): a direct neighbour counts twice a diagonal one, as in the paper.
NEIGHBOURS = tuple(
    (dy, dx, 1 / 12 if dy and dx else 1 / 6)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if dy or dx
)


def noisy_linear_imputation(
    image: torch.Tensor,
    removed: torch.Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A copy of the (C, H, W) ``image`` whose ``removed`` (H, W) pixels are filled from
    their neighbours, with Gaussian noise of std ``noise`` (image units) on the filled pixels.

    Each removed pixel equals the weighted mean of the neighbours it has (1/6 direct, 1/12
    diagonal, renormalised at the borders); removed neighbours are unknowns of the same
    sparse system, solved for every channel at once in float64. Kept pixels are returned
    bit-exact. The noise comes from ``generator`` (a CPU one), so it does not depend on the
    image's device. Removing every pixel leaves nothing to impute from: ``ValueError``.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if removed.dtype != torch.bool or removed.shape != image.shape[-2:]:
        raise ValueError(
            f"removed must be a bool (H, W) mask of the image's size {tuple(image.shape[-2:])},"
            f" got {removed.dtype} {tuple(removed.shape)}"
        )
    if noise < 0:
        raise ValueError(f"noise is a standard deviation, must be >= 0, got {noise}")
    out = image.clone()
    mask = removed.detach().cpu().numpy()
    count = int(mask.sum())
    if count == 0:
        return out
    if count == mask.size:
        raise ValueError("every pixel is removed: linear imputation needs at least one kept pixel")
    filled = torch.from_numpy(_linear_fill(image.detach().cpu().double().numpy(), mask))
    if noise > 0:
        filled = filled + noise * torch.randn(
            filled.shape, generator=generator, dtype=torch.float64
        )
    out[:, removed.to(image.device)] = filled.to(out)
    return out


def road_scores(
    score: ScoreFn,
    image: torch.Tensor,
    saliency: torch.Tensor,
    fractions: Sequence[float] = FRACTIONS,
    order: str = "morf",
    noise: float = 0.01,
    seed: int = 0,
) -> torch.Tensor:
    """``score`` of ``image`` after imputing its ``round(f * H * W)`` most ("morf") or least
    ("lerf") salient pixels, for every f in ``fractions``: what ``score`` returns, (F,) or
    (F, T), for the (F, C, H, W) batch of imputed images, scored in one call.

    ``saliency`` is (H, W), the image's size; equal values keep row-major order. The noise of
    fraction i is seeded by (``seed``, i) alone, so a run is reproducible and a fraction's
    image does not change with how many fractions follow it.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise ValueError(f"fractions must be one or more values in (0, 1), got {list(fractions)}")
    if image.dim() != 3 or saliency.shape != image.shape[-2:]:
        raise ValueError(
            f"saliency must be (H, W) of a (C, H, W) image, got shapes {tuple(saliency.shape)}"
            f" and {tuple(image.shape)}"
        )
    height, width = saliency.shape
    key = saliency.detach().flatten().double()
    ranking = torch.argsort(-key if order == "morf" else key, stable=True)
    rank = torch.empty_like(ranking)
    rank[ranking] = torch.arange(ranking.numel(), device=ranking.device)
    rank = rank.reshape(height, width)
    with torch.no_grad():
        batch = torch.stack([
            noisy_linear_imputation(
                image, rank < round(f * height * width), noise, _fraction_generator(seed, i)
            )
            for i, f in enumerate(fractions)
        ])
        return torch.as_tensor(score(batch))


def _linear_fill(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C, n) values of the n removed pixels (row-major) that equal their neighbours' mean.

    Row i of the system is total_i * x_i - sum of w * x_j over removed neighbours j = sum of
    w * value over kept neighbours, total_i being the weight of the neighbours that exist.
    """
    channels, height, width = pixels.shape
    ys, xs = np.nonzero(mask)
    count = ys.size
    unknown = np.full(mask.shape, -1, dtype=np.int64)
    unknown[ys, xs] = np.arange(count)
    total = np.zeros(count)
    rhs = np.zeros((count, channels))
    rows, cols, weights = [np.arange(count)], [np.arange(count)], []
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        source, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        total[source] += weight
        neighbour = unknown[ny, nx]
        joint = neighbour >= 0
        rows.append(source[joint])
        cols.append(neighbour[joint])
        weights.append(np.full(int(joint.sum()), -weight))
        kept = ~joint
        rhs[source[kept]] += weight * pixels[:, ny[kept], nx[kept]].T
    system = scipy.sparse.coo_array(
        (np.concatenate([total, *weights]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, count),
    ).tocsc()
    # spsolve drops the column axis of a one-column right-hand side: put it back.
    return scipy.sparse.linalg.spsolve(system, rhs).reshape(count, channels).T


def _fraction_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for fraction ``index`` of a run seeded by ``seed`` (non-negative)."""
    state = np.random.SeedSequence((seed, index)).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))
