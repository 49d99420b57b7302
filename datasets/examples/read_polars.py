#!/usr/bin/env python3
"""Read a Sentinel Mesh dataset with polars: row counts and a summary.

    python3 datasets/examples/read_polars.py DATASET_DIR

Prints one JSON object: rows per table (Parquet and Arrow IPC), and per
attack kind the feature rows and the mean of two feature columns.
"""
import json
import sys

import polars as pl

TABLES = ["features", "telemetry_host", "telemetry_links", "events"]


def main():
    d = sys.argv[1]
    out = {"parquet": {}, "arrow": {}}
    for t in TABLES:
        out["parquet"][t] = pl.read_parquet(f"{d}/{t}.parquet").height
        out["arrow"][t] = pl.read_ipc(f"{d}/{t}.arrow").height
    f = pl.read_parquet(f"{d}/features.parquet")
    by_kind = (
        f.group_by("attack")
        .agg(pl.len().alias("rows"), pl.col("peer_invalid_med").mean(), pl.col("peer_rate_limited_med").mean())
        .sort("attack")
    )
    out["by_attack"] = {r["attack"]: r for r in by_kind.to_dicts()}
    out["malicious_rows"] = int(f["malicious"].sum())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
