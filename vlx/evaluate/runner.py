"""Measuring a metric over a whole source: streamed, batched, resumable, split by torchrun.

The source's groups (scenes, photos) are built into examples by loader workers and measured
``batch_size`` groups at a time; their records are kept by part of ``part_size`` groups. With
``out``, each finished part is written atomically to ``OUT/records/``, so a rerun with the same
arguments goes on after the parts written, and under torchrun each process measures every
``WORLD_SIZE``-th group; the first merges every part's records, in source order, into the
summary. The numbers are the same however the run was cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vlx.evaluate.measures import Metric, Record
from vlx.evaluate.sources import EvaluationData
from vlx.files import sweep_temporaries, write_text_atomic
from vlx.runs.distributed import ProcessGroup, Rank
from vlx.task import Example, Task

RECORDS = "records"


class _Groups(Dataset):
    """Lists of group positions -> (positions, the examples each group holds)."""

    def __init__(self, data: EvaluationData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.groups)

    def __getitem__(self, positions: list[int]) -> tuple[list[int], list[list[Example]]]:
        return positions, [self.data.build(self.data.groups[p]) for p in positions]


def _one_thread(worker: int) -> None:
    torch.set_num_threads(1)


def measure(
    task: Task, data: EvaluationData, metric: Metric, *, batch_size: int = 1, workers: int = 0,
    out: Path | None = None, part_size: int = 64, rank: Rank | None = None,
) -> dict[str, Any]:
    """``metric``'s summary over ``data`` (``unanswerable``: examples whose true target the
    model cannot name)."""
    rank = rank or Rank()
    metric.categories, metric.predicted = data.categories, data.predicted
    shard = rank.shard(len(data.groups))
    parts = [shard[i : i + part_size] for i in range(0, len(shard), part_size)]
    written = _written(out, rank) if out is not None else {}
    with ProcessGroup(rank, task.device) as group:
        todo = [p for p in range(len(parts)) if p not in written]
        kept: dict[int, tuple[list[Record], int]] = dict(written)
        for part, records, skipped in _measured(task, data, metric, parts, todo, batch_size,
                                                workers):
            kept[part] = (records, skipped)
            if out is not None:
                _write(out, rank, part, records, skipped)
        group.barrier()
        if not rank.main:
            return {}
        if rank.world > 1:  # every process's parts, from the files they wrote
            kept = {(r, p): v for r in range(rank.world)
                    for p, v in _written(out, Rank(r, rank.world)).items()}
        records = sorted((record for records, _ in kept.values() for record in records),
                         key=lambda record: (record["group"], record["sequence"]))
        skipped = sum(s for _, s in kept.values())
    summary = metric.summary(records)
    return {**summary, **({"unanswerable": skipped} if skipped else {})}


def _measured(task: Task, data: EvaluationData, metric: Metric, parts: list[list[int]],
              todo: Sequence[int], batch_size: int, workers: int
              ) -> Iterator[tuple[int, list[Record], int]]:
    """(part, its records, examples skipped) for each part to do, measured in batches of
    ``batch_size`` groups built by ``workers`` loader processes."""
    plan = [(part, parts[part][i : i + batch_size]) for part in todo
            for i in range(0, len(parts[part]), batch_size)]
    loader = DataLoader(_Groups(data), batch_size=None, sampler=[p for _, p in plan],
                        num_workers=workers, collate_fn=lambda built: built,
                        worker_init_fn=_one_thread if workers else None,
                        multiprocessing_context="fork" if workers else None)
    current, records, before = None, [], metric.skipped
    for (part, _), (positions, groups) in zip(plan, _progress(loader, len(plan))):
        if part != current and current is not None:
            yield current, records, metric.skipped - before
            records, before = [], metric.skipped
        current = part
        examples = [e for group in groups for e in group]
        owners = [p for p, group in zip(positions, groups) for _ in group]
        if examples:
            for sequence, record in enumerate(metric.records(task, examples)):
                records.append({**record, "group": owners[record["example"]],
                                "sequence": sequence})
    if current is not None:
        yield current, records, metric.skipped - before


def _progress(loader: DataLoader, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(loader, total=total, desc="evaluate", unit="batch", disable=None)


def _written(out: Path | None, rank: Rank) -> dict[int, tuple[list[Record], int]]:
    folder = out / RECORDS if out is not None else None
    if folder is None or not folder.is_dir():
        return {}
    sweep_temporaries(folder)
    prefix = f"part-{rank.rank:05d}-"
    found = {}
    for file in folder.glob(f"{prefix}*.json"):
        content = json.loads(file.read_text())
        found[int(file.stem[len(prefix):])] = (content["records"], content["skipped"])
    return found


def _write(out: Path, rank: Rank, part: int, records: list[Record], skipped: int) -> None:
    write_text_atomic(out / RECORDS / f"part-{rank.rank:05d}-{part:06d}.json",
                      json.dumps({"records": records, "skipped": skipped}))
