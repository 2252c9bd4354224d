"""A dataset run's results as a table: one row per (example, method, target), in Parquet parts.

Each part holds the rows of a fixed range of one process's items and is written atomically,
so the parts that exist are exactly the work done: a rerun skips them, and
``pandas.read_parquet(OUT / "explanations")`` reads the whole run. A map is kept raw, at the
layer's resolution (row-major float32), with its peak in the input image's pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlx.files import write_atomic, write_text_atomic

TABLE = "explanations"
ERRORS = "errors"


def part_name(rank: int, part: int) -> str:
    return f"part-{rank:05d}-{part:06d}"


def schema(text_column: str | None, alphas: bool) -> Any:
    """The columns of every part (the same for empty ones, so the parts read as one table)."""
    import pyarrow as pa

    fields = [
        ("index", pa.int64()), ("example", pa.string()),
        *([(text_column, pa.string())] if text_column else []),
        ("method", pa.string()), ("layer", pa.string()), ("target", pa.int64()),
        ("target_name", pa.string()), ("score", pa.float64()), ("predicted", pa.string()),
        ("peak_x", pa.int64()), ("peak_y", pa.int64()), ("map_height", pa.int64()),
        ("map_width", pa.int64()), ("map", pa.list_(pa.float32())),
        *([("alphas", pa.list_(pa.float32()))] if alphas else []),
    ]
    return pa.schema(fields)


def write_part(out: Path, rank: int, part: int, rows: list[dict[str, Any]], columns: Any,
               errors: list[dict[str, Any]]) -> Path:
    """Write one part's rows (and its failed examples, first, beside it): the Parquet file is
    the mark that the part is done."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = part_name(rank, part)
    lines = "".join(json.dumps(error) + "\n" for error in errors)
    write_text_atomic(out / ERRORS / f"{name}.jsonl", lines)
    table = pa.Table.from_pylist(rows, schema=columns)
    return write_atomic(out / TABLE / f"{name}.parquet", lambda stream: pq.write_table(table, stream))


def done_parts(out: Path, rank: int) -> set[int]:
    """The parts of ``rank`` already written."""
    folder = out / TABLE
    prefix = f"part-{rank:05d}-"
    return {int(p.stem[len(prefix):]) for p in folder.glob(f"{prefix}*.parquet")} if (
        folder.is_dir()) else set()


def count_rows(out: Path) -> int:
    """Rows of every part, read from the files' footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (out / TABLE).glob("*.parquet"))


def merged_errors(out: Path) -> list[dict[str, Any]]:
    """Every part's failed examples, in source order."""
    errors = [json.loads(line) for file in sorted((out / ERRORS).glob("*.jsonl"))
              for line in file.read_text().splitlines() if line]
    return sorted(errors, key=lambda error: error["index"])
