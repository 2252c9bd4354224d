"""A dataset run: every example of ``--data`` explained, streamed in batches into a table.

The same run for every task, over the task contract: items are cut into parts of
``--part-size`` (each process its own shard under torchrun), a loader prepares their batches,
the model predicts and every ``--method`` explains each batch's targets, and each finished part
is written at once. A rerun with the same arguments finds the parts already written and goes
on after them, so an interrupted run ends with the table an uninterrupted one would have.
Examples that cannot be read or explained are recorded in ``errors.jsonl`` and skipped
(``--fail-fast`` stops at the first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.files import slug, sweep_temporaries, write_text_atomic
from vlx.render import explanation_picture, grid, save_png
from vlx.runs.distributed import ProcessGroup, Rank, current_rank, rank_device
from vlx.runs.loader import Loaded, batches, loader_workers
from vlx.runs.sources import Item, read_source
from vlx.runs.table import (
    TABLE,
    count_rows,
    done_parts,
    merged_errors,
    schema,
    write_part,
)
from vlx.task import Batch, TargetSet, Task

FIGURES = ("none", "grid", "all")
MANIFEST = "run.json"
IDENTITY = ("command", "data", "model", "method", "layer", "target", "words", "answers",
            "batch_size", "part_size", "save_alphas", "world")
"""What makes two runs the same run: a rerun must agree on each to go on from its parts."""


def check_run_options(args: argparse.Namespace) -> None:
    """What only a dataset run checks, before any work."""
    if args.part_size < 1 or (args.workers or 0) < 0:
        raise InputError("--part-size must be at least 1, --workers at least 0")
    if args.text:
        raise InputError("--text is for single images; a dataset run keeps the alphas instead "
                         "(--save-alphas)")


def run_dataset(args: argparse.Namespace, out: Path, load: Any, kind: str) -> int:
    """Explain ``--data`` into ``out`` (checked, with every option, by the command) with the
    task ``load(device)`` gives; returns the exit status (0, or 1 when some examples failed:
    the summary line says how many)."""
    from vlx.devices import resolve_device

    rank = current_rank()
    device = rank_device(rank, resolve_device(args.device))
    items = read_source(args.data, kind)
    task = load(device)
    task.check_layer(args.layer)
    if args.workers is None:
        args.workers = loader_workers(device)
    with ProcessGroup(rank, device) as group:
        _check_manifest(out, args, rank)
        group.barrier()
        started = time.perf_counter()
        counts = _explain_shard(task, items, args, rank, out, kind)
        write_text_atomic(out / "ranks" / f"rank-{rank.rank:05d}.json", json.dumps(
            {**counts, "seconds": time.perf_counter() - started}))
        group.barrier()
        if rank.main:
            summary = _summary(out, args, items, rank)
            failed = summary["failed"]
            message = (f"explained {summary['explained']} of {len(items)} examples "
                       f"({summary['rows']} rows) into {out / TABLE}; {failed} failed"
                       + (f" (see {out / 'errors.jsonl'})" if failed else ""))
            print(json.dumps(summary, indent=2) if args.json else message)
            if args.json:
                print(message, file=sys.stderr)
            return 1 if failed else 0
    return 0


def _check_manifest(out: Path, args: argparse.Namespace, rank: Rank) -> None:
    """A folder holds one run: a rerun with other arguments is refused, not mixed in."""
    wanted = {key: _plain(getattr(args, key, None)) for key in IDENTITY if key != "world"}
    wanted["world"] = rank.world
    manifest = out / MANIFEST
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        changed = [key for key in IDENTITY if found.get(key) != wanted.get(key)]
        if changed:
            key = changed[0]
            raise InputError(
                f"--out {str(out)!r} holds a run with {key} {found.get(key)!r}, not "
                f"{wanted.get(key)!r}; rerun with the same arguments to go on, or give a new --out"
            )
    elif rank.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(manifest, json.dumps(wanted, indent=2) + "\n")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _explain_shard(task: Task, items: list[Item], args: argparse.Namespace, rank: Rank,
                   out: Path, kind: str) -> dict[str, int]:
    """This process's parts: the ones not yet written, each explained and written."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    for folder in (out / TABLE, out / "errors", out):
        sweep_temporaries(folder)
    shard = rank.shard(len(items))
    parts = [shard[i : i + args.part_size] for i in range(0, len(shard), args.part_size)]
    done = done_parts(out, rank.rank)
    todo = [p for p in range(len(parts)) if p not in done]
    text_column = {"vqa": "question", "caption": "caption"}.get(kind)
    bar = tqdm(total=sum(len(parts[p]) for p in todo), desc=f"explain {args.data}",
               unit="example", file=sys.stderr,
               disable=True if args.json or not rank.main else None)  # None: on a terminal
    counts = {"explained": 0, "failed": 0}
    try:
        _explain_parts(task, items, args, rank, out, parts, todo, text_column, bar, counts)
    finally:
        bar.close()
    return counts


def _explain_parts(task: Task, items: list[Item], args: argparse.Namespace, rank: Rank,
                   out: Path, parts: list[list[int]], todo: list[int], text_column: str | None,
                   bar: Any, counts: dict[str, int]) -> None:
    columns = schema(text_column, args.save_alphas)
    rows: dict[int, list] = {p: [] for p in todo}
    errors: dict[int, list] = {p: [] for p in todo}
    remaining = {p: len(parts[p]) for p in todo}
    for index, loaded in batches(task, items, [parts[p] for p in todo], args.batch_size,
                                 args.workers, args.max_side):
        part = todo[index]
        failed = [{"index": p, "example": items[p].name, "reason": reason}
                  for p, reason in loaded.errors]
        if loaded.batch is not None:
            new_rows, more = _explain(task, loaded, items, args, text_column, out)
            rows[part] += new_rows
            failed += more
        if failed and args.fail_fast:
            raise InputError(f"example {failed[0]['example']!r}: {failed[0]['reason']}")
        errors[part] += failed
        counts["failed"] += len(failed)
        counts["explained"] += len(loaded.positions) - (len(failed) - len(loaded.errors))
        bar.update(len(loaded.positions) + len(loaded.errors))
        remaining[part] -= len(loaded.positions) + len(loaded.errors)
        if remaining[part] == 0:
            write_part(out, rank.rank, part, rows.pop(part), columns, errors.pop(part))


def _requested(items: list[Item], positions: list[int], args: argparse.Namespace) -> list | None:
    """The targets of each example: its item's own, else the command's (``--target``,
    ``--words``, ``--answers`` with the predicted answer), else the prediction."""
    own = [list(items[p].targets) for p in positions]
    if all(own):
        return own
    given = getattr(args, "target", None) or getattr(args, "words", None)
    if given:
        return [list(given)] * len(positions)
    return None


def _explain(task: Task, loaded: Loaded, items: list[Item], args: argparse.Namespace,
             text_column: str | None, out: Path) -> tuple[list[dict], list[dict]]:
    """The rows of one batch, and the examples whose targets could not be explained."""
    batch, positions = loaded.batch, loaded.positions
    requested = _requested(items, positions, args)
    answers = getattr(args, "answers", None)
    explanations = {}
    copies = {"batch_size": args.batch_size}  # edited copies per forward, where a method makes them
    if requested is None and not answers:  # the prediction, found by the explaining forward
        targets, explanations[args.method[0]] = task.explain_predicted(
            batch, args.method[0], args.layer, **copies)
        # a caption is predicted by generating it (done once per batch: it is kept)
        predicted = ([p[0].name for p in task.predict(batch, 1)] if task.kind == "caption"
                     else [row[0].name for row in targets.rows])
    else:
        predicted = [p[0].name for p in task.predict(batch, 1)]
        if answers and requested is None:
            requested = [list(dict.fromkeys([p, *answers])) for p in predicted]
        try:
            targets = task.targets(batch, requested)
        except InputError:
            return _one_by_one(task, loaded, items, args, text_column, out)
    for method in args.method:
        if method not in explanations:
            explanations[method] = task.explain(batch, targets, method, args.layer, **copies)
    rows = []
    for n, position in enumerate(positions):
        item = items[position]
        for method, explanation in explanations.items():
            peaks = _peaks(explanation, n, loaded.sizes[n], batch)
            for t, target in enumerate(targets.rows[n]):
                grid_map = explanation.maps[n, t].float().cpu()
                row = {
                    "index": position, "example": item.name, "method": method,
                    "layer": explanation.layer, "target": target.id,
                    "target_name": target.name, "score": float(explanation.scores[n, t]),
                    "predicted": predicted[n], "peak_x": peaks[t][0],
                    "peak_y": peaks[t][1], "map_height": grid_map.shape[0],
                    "map_width": grid_map.shape[1], "map": grid_map.flatten().tolist(),
                }
                if text_column:
                    row[text_column] = batch.examples[n].text if text_column == "question" else (
                        " ".join(targets.context[n].units) if targets.context else None)
                if args.save_alphas:
                    row["alphas"] = (explanation.alphas[n, t].float().cpu().tolist()
                                     if explanation.alphas is not None else None)
                rows.append(row)
        if args.figures != "none":
            _figures(batch, n, targets, explanations, out, item, args.figures)
    return rows, []


def _one_by_one(task: Task, loaded: Loaded, items: list[Item], args: argparse.Namespace,
                text_column: str | None, out: Path) -> tuple[list[dict], list[dict]]:
    """Each example of a batch alone, where one's targets the model cannot name."""
    rows, failed = [], []
    for n, position in enumerate(loaded.positions):
        one = Loaded([position], [loaded.sizes[n]], loaded.batch.select(n))
        try:
            task.targets(one.batch, _requested(items, [position], args))
        except InputError as err:
            failed.append({"index": position, "example": items[position].name,
                           "reason": str(err)})
            continue
        more, _ = _explain(task, one, items, args, text_column, out)
        rows += more
    return rows, failed


def _peaks(explanation: Explanation, n: int, size: tuple[int, int], batch: Batch
           ) -> list[list[int]]:
    """Each target's peak of example n, located on the picture as drawn, in input pixels."""
    shown = batch.examples[n].image
    one = Explanation(explanation.maps[n : n + 1], explanation.scores[n : n + 1], None,
                      explanation.method)
    return one.peaks((shown.height, shown.width), size)[0].tolist()


def _figures(batch: Batch, n: int, targets: TargetSet, explanations: dict[str, Explanation],
             out: Path, item: Item, which: str) -> None:

    shown = batch.examples[n].image
    panels = [("input", shown)]
    stem = slug(item.name)
    for method, explanation in explanations.items():
        for t, target in enumerate(targets.rows[n]):
            picture = explanation_picture(explanation, n, t, shown)
            panels.append((f"{method}: {target.name}", picture))
            if which == "all":
                save_png(picture, out / "figures" / f"{stem}_{method}_{slug(target.name)}.png")
    save_png(grid(panels, columns=min(len(panels), 4)), out / "figures" / f"{stem}_grid.png")


def _summary(out: Path, args: argparse.Namespace, items: list[Item], rank: Rank) -> dict:
    """Counts, timings and options of the whole run; the failed examples in ``errors.jsonl``."""
    errors = merged_errors(out)
    write_text_atomic(out / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    ranks = [json.loads(p.read_text()) for p in sorted((out / "ranks").glob("rank-*.json"))]
    seconds = max((r["seconds"] for r in ranks), default=0.0)
    this_run = sum(r["explained"] + r["failed"] for r in ranks)
    summary = {
        "command": args.command,
        "data": args.data,
        "examples": len(items),
        "explained": len(items) - len(errors),
        "failed": len(errors),
        "rows": count_rows(out),
        "processes": rank.world,
        "seconds": round(seconds, 3),
        "examples_per_second": round(this_run / seconds, 3) if seconds else None,
        "options": {key: _plain(getattr(args, key, None)) for key in IDENTITY if key != "world"}
        | {"workers": args.workers, "device": args.device, "max_side": args.max_side,
           "figures": args.figures},
        "table": str(out / TABLE),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
