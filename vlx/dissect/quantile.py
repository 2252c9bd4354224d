"""Per-unit activation thresholds from a bounded sample: memory does not grow with the probe.

Each unit's threshold is the top-``q`` quantile of its activations over every probe image and
position (Bau et al. 2017: q = 0.005). Keeping all activations grows with the probe; instead a
uniform reservoir sample (Vitter's Algorithm R) of at most ``capacity`` positions is kept. All
units share the sampled positions, so one random draw serves every unit. While the probe has
no more positions than ``capacity`` the sample is everything and the quantile is exact.
"""

from __future__ import annotations

import torch

SAMPLE_SIZE = 16384
"""Positions kept per unit: the top 0.5% then rests on about 80 sampled values."""


class UnitQuantiles:
    """Streaming per-unit quantiles over (K, m) batches of activations, in fixed memory.

    Args:
        units: K, the number of units.
        capacity: the most positions kept (K x capacity floats in all).
        seed: the sampling stream, so a dissection is reproducible.
    """

    def __init__(
        self, units: int, capacity: int = SAMPLE_SIZE, seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.sample = torch.empty(units, capacity, device=device)
        self.seen = 0
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def state_bytes(self) -> int:
        """Bytes held between batches (constant: the point of a bounded sample)."""
        return self.sample.numel() * self.sample.element_size()

    def add(self, values: torch.Tensor) -> None:
        """Add (K, m) values: m more positions of every unit."""
        capacity = self.sample.shape[1]
        m = values.shape[1]
        fill = min(max(capacity - self.seen, 0), m)
        if fill:
            self.sample[:, self.seen : self.seen + fill] = values[:, :fill]
        rest = m - fill
        if rest:
            # Algorithm R: the position with stream index t replaces slot j ~ U{0..t} when
            # j < capacity; where several land on one slot the last one wins, as in a loop.
            t = torch.arange(self.seen + fill, self.seen + m, dtype=torch.float64)
            j = (torch.rand(rest, generator=self._generator, dtype=torch.float64) * (t + 1)).long()
            kept = torch.nonzero(j < capacity).flatten()
            last = torch.full((capacity,), -1, dtype=torch.long)
            last.scatter_reduce_(0, j[kept], kept, reduce="amax")
            slots = torch.nonzero(last >= 0).flatten()
            items = fill + last[slots]
            self.sample[:, slots.to(self.sample.device)] = values[:, items.to(values.device)]
        self.seen += m

    def quantile(self, q: float) -> torch.Tensor:
        """(K,) values with a fraction ``q`` of each unit's activations above them, linearly
        interpolated between order statistics (NumPy's default definition)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if self.seen == 0:
            raise ValueError("no activations were added")
        n = min(self.seen, self.sample.shape[1])
        values = self.sample[:, :n]
        position = (1.0 - q) * (n - 1)
        low = int(position)
        weight = position - low
        # two order statistics by selection: no sorted copy of the whole sample
        below = values.kthvalue(low + 1, dim=1).values
        above = values.kthvalue(min(low + 2, n), dim=1).values
        return below * (1.0 - weight) + above * weight
