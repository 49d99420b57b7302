#!/usr/bin/env python3
"""Compare candidate detectors on a model-selection dataset.

    python3 models/training/tune.py DATASET_DIR MODEL.onnx [MODEL.onnx ...]

DATASET_DIR comes from `sentinel-sim run simulator/scenarios/detect-tune.toml
--dataset DIR` (never from detect-eval, which stays held out). For each
model, over rows whose observer is honest, after the 60 s warm-up, prints
one JSON line: honest rows scored at or above the raise threshold, row
recall per attack kind, and the local suspicions the protocol's hysteresis
(`protocol/src/suspicion.rs`: raise after `--raise-after` windows >= 0.9,
clear after 3 windows < 0.5) would raise against honest subjects and
against attackers.
"""

import argparse
import json

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

RAISE, CLEAR, CLEAR_AFTER, WARMUP_MS = 0.9, 0.5, 3, 60_000


def raises(order, score, observer, subject, honest_observer, benign, raise_after):
    """(raises against honest subjects, raises against attackers) when each
    (observer, subject) pair's rows are fed in time order."""
    false, true, state = 0, 0, {}
    for i in order:
        if not honest_observer[i]:
            continue
        key = (observer[i], subject[i])
        high, low, raised = state.get(key, (0, 0, False))
        high = high + 1 if score[i] >= RAISE else 0
        low = low + 1 if score[i] < CLEAR else 0
        if not raised and high >= raise_after:
            raised = True
            if benign[i]:
                false += 1
            else:
                true += 1
        elif raised and low >= CLEAR_AFTER:
            raised = False
        state[key] = (high, low, raised)
    return false, true


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--raise-after", type=int, default=2)
    args = ap.parse_args()

    table = pq.read_table(f"{args.dataset}/features.parquet")
    cols = table.column_names
    names = cols[cols.index("subject") + 1 : cols.index("malicious")]
    x = np.stack([table.column(c).to_numpy() for c in names], axis=1).astype(np.float32)
    kind = np.asarray(table.column("attack").to_pylist(), dtype=object)
    fraction = table.column("attack_fraction").to_numpy()
    malicious = table.column("malicious").to_numpy(zero_copy_only=False)
    observer = np.asarray(table.column("observer").to_pylist(), dtype=object)
    subject = np.asarray(table.column("subject").to_pylist(), dtype=object)
    time_ms = table.column("time_ms").to_numpy()
    attackers = set(subject[kind != "none"])
    honest_observer = np.array([o not in attackers for o in observer])
    counted = honest_observer & (time_ms >= WARMUP_MS)
    benign = (kind == "none") & (fraction == 0) & (time_ms >= WARMUP_MS)
    order = np.lexsort((time_ms, subject, observer))

    for path in args.models:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        score = np.concatenate(
            [session.run(None, {feed: x[i : i + 200_000]})[0][:, 0] for i in range(0, len(x), 200_000)]
        )
        high = score >= RAISE
        out = {
            "model": path,
            "rows": int(counted.sum()),
            "honest_rows_high": int((high & counted & (kind == "none")).sum()),
            "recall_by_kind": {
                k: round(float(high[counted & malicious & (kind == k)].mean()), 4)
                for k in sorted(set(kind[malicious]))
            },
        }
        out["false_raises"], out["true_raises"] = raises(
            order, score, observer, subject, honest_observer, benign, args.raise_after
        )
        print(json.dumps(out))


if __name__ == "__main__":
    main()
