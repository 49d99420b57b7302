#!/usr/bin/env python3
"""Read a Sentinel Mesh dataset with pyarrow: row counts and metadata.

    python3 datasets/examples/read_pyarrow.py DATASET_DIR

Prints one JSON object: rows per table (Parquet and Arrow IPC counted
separately), the Parquet key-value metadata, the malicious share of the
feature rows, and the sums of the links' signed relay checks.
"""
import json
import sys

import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

TABLES = ["features", "telemetry_host", "telemetry_links", "events"]


def main():
    d = sys.argv[1]
    out = {"parquet": {}, "arrow": {}}
    for t in TABLES:
        table = pq.read_table(f"{d}/{t}.parquet")
        out["parquet"][t] = table.num_rows
        with ipc.open_file(f"{d}/{t}.arrow") as f:
            out["arrow"][t] = f.read_all().num_rows
    features = pq.read_table(f"{d}/features.parquet")
    meta = pq.read_metadata(f"{d}/features.parquet").metadata
    out["metadata"] = {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"sentinel.")}
    out["malicious_rows"] = pc.sum(features.column("malicious").cast("int64")).as_py() or 0
    links = pq.read_table(f"{d}/telemetry_links.parquet")
    claimed = links.column("relays_claimed").cast("int64")
    missing = links.column("relays_missing").cast("int64")
    out["links_relays"] = {
        "claimed": pc.sum(claimed).as_py() or 0,
        "missing": pc.sum(missing).as_py() or 0,
        "missing_above_claimed": pc.sum(pc.greater(missing, claimed).cast("int64")).as_py() or 0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
