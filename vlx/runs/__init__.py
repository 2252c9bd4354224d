"""Dataset runs: a whole ``--data`` source explained in streamed batches into a Parquet table,
resumable, split between processes by torchrun."""
