#!/usr/bin/env python3
"""Query a Sentinel Mesh dataset with DuckDB: row counts and metadata.

    python3 datasets/examples/read_duckdb.py DATASET_DIR

Parquet files are read by DuckDB directly (`read_parquet`,
`parquet_kv_metadata`); Arrow IPC files through pyarrow, which DuckDB
queries in place.
"""
import json
import sys

import duckdb
import pyarrow.ipc as ipc

TABLES = ["features", "telemetry_host", "telemetry_links", "events"]


def main():
    d = sys.argv[1]
    con = duckdb.connect()
    out = {"parquet": {}, "arrow": {}}
    for t in TABLES:
        out["parquet"][t] = con.execute(f"SELECT count(*) FROM read_parquet('{d}/{t}.parquet')").fetchone()[0]
        with ipc.open_file(f"{d}/{t}.arrow") as f:
            arrow_table = f.read_all()  # noqa: F841 (queried by name below)
        out["arrow"][t] = con.execute("SELECT count(*) FROM arrow_table").fetchone()[0]
    rows = con.execute(
        f"SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata('{d}/features.parquet')"
    ).fetchall()
    out["metadata"] = {k: v for k, v in rows if k.startswith("sentinel.")}
    out["malicious_rows"] = con.execute(
        f"SELECT count(*) FROM read_parquet('{d}/features.parquet') WHERE malicious"
    ).fetchone()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
