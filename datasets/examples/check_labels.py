#!/usr/bin/env python3
"""Check a simulated dataset's labels against the attacks' start times.

    python3 datasets/examples/check_labels.py DATASET_DIR KIND:START_MS ...

A row is labelled malicious exactly when its subject's attack ran for the
whole window: never before the start, always from one window after it.
"""
import json
import sys

import polars as pl


def main():
    f = pl.read_parquet(f"{sys.argv[1]}/features.parquet")
    window = 5_000
    before = after = quiet = 0
    for arg in sys.argv[2:]:
        kind, start = arg.split(":")
        start = int(start)
        k = f.filter(pl.col("attack") == kind)
        before += k.filter((pl.col("time_ms") <= start) & pl.col("malicious")).height
        after += k.filter((pl.col("time_ms") >= start + window) & ~pl.col("malicious")).height
        if kind == "flash":
            quiet += k.filter(pl.col("time_ms") < start).height
    honest_malicious = f.filter((pl.col("attack") == "none") & pl.col("malicious")).height
    print(json.dumps({
        "malicious_before_start": before + honest_malicious,
        "benign_after_start": after,
        "flash_quiet_rows": quiet,
    }))


if __name__ == "__main__":
    main()
