"""Streaming a source's items as prepared batches: decoding and preprocessing in loader workers.

A batch is prepared in a worker by the task's own ``prepare`` (on the CPU) and moved to the
model's device in the main process, where the model runs. An item that cannot be read (a
truncated file, a text the model cannot encode) is returned as an error, and the rest of its
batch goes on. Images are kept only at the size pictures are drawn at, so memory follows the
batch, not the photos.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from vlx.errors import InputError
from vlx.images import bounded
from vlx.runs.sources import Item
from vlx.task import Batch, Example, Task


@dataclass
class Loaded:
    """One batch of a part: the prepared batch of the items that could be read, their
    positions in the source and image sizes, and the items that could not (position, reason)."""

    positions: list[int]
    sizes: list[tuple[int, int]]
    batch: Batch | None
    errors: list[tuple[int, str]] = field(default_factory=list)


class ItemBatches(Dataset):
    """Index lists of the source -> ``Loaded`` batches (a map-style dataset fed whole batches
    by its sampler, so each worker prepares a batch at once)."""

    def __init__(self, task: Task, items: Sequence[Item], max_side: int) -> None:
        self.task, self.items, self.max_side = task, items, max_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, positions: list[int]) -> Loaded:
        good, errors = [], []
        for position in positions:
            item = self.items[position]
            try:
                image = item.image()
            except InputError as err:
                errors.append((position, str(err)))
                continue
            good.append((position, image.size[::-1],
                         Example(bounded(image, self.max_side), item.text, item.name)))
        good, batch = self._prepared(good, errors)
        return Loaded([p for p, _, _ in good], [s for _, s, _ in good], batch, errors)

    def _prepared(self, good: list, errors: list) -> tuple[list, Batch | None]:
        """The examples ``prepare`` accepts, prepared: where the batch fails (a question
        without a known word, say), each is tried alone and the failing ones become errors."""
        if not good:
            return good, None
        try:
            return good, self.task.prepare([e for _, _, e in good])
        except InputError:
            kept = []
            for entry in good:
                try:
                    self.task.prepare([entry[2]])
                    kept.append(entry)
                except InputError as err:
                    errors.append((entry[0], str(err)))
            return kept, (self.task.prepare([e for _, _, e in kept]) if kept else None)


def loader_workers(device: torch.device) -> int:
    """The loader processes a run gets unless told: none beside a model on the CPU, where the
    model's threads already use every core and a loader process would only take turns with
    them (measured: 16.2 images/s with none, 12.5 with one, on 2 cores); four beside a GPU."""
    return 0 if device.type == "cpu" else 4


def _in_worker(worker: int) -> None:
    """A worker prepares on the CPU with one thread; the main process moves batches."""
    torch.set_num_threads(1)
    info = get_worker_info()
    info.dataset.task.device = torch.device("cpu")


def batches(task: Task, items: Sequence[Item], parts: Sequence[list[int]], batch_size: int,
            workers: int, max_side: int) -> Iterator[tuple[int, Loaded]]:
    """``(part, loaded batch)`` for every batch of every part in order, prepared by
    ``workers`` processes (0: in this one) and on the task's device."""
    plan = [(part, positions[i : i + batch_size]) for part, positions in enumerate(parts)
            for i in range(0, len(positions), batch_size)]
    loader = DataLoader(
        ItemBatches(task, items, max_side), batch_size=None, sampler=[p for _, p in plan],
        num_workers=workers, worker_init_fn=_in_worker if workers else None,
        collate_fn=lambda loaded: loaded, persistent_workers=False,
        multiprocessing_context="fork" if workers else None,
    )
    for (part, _), loaded in zip(plan, loader):
        if loaded.batch is not None:
            loaded.batch = loaded.batch.to(task.device)
        yield part, loaded
