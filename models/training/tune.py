#!/usr/bin/env python3
"""Compare candidate detectors on a model-selection dataset.

    python3 models/training/tune.py DATASET_DIR MODEL.onnx [MODEL.onnx ...] \
        [--scenario simulator/scenarios/detect-tune.toml]

DATASET_DIR comes from `sentinel-sim run simulator/scenarios/detect-tune.toml
--dataset DIR` (never from detect-eval, which stays held out). For each
model, over rows whose observer is honest, after the 60 s warm-up, prints
one JSON line: honest rows scored at or above the raise threshold, row
recall per attack kind, window recall per attack kind (a malicious
(subject, window) counts as caught when an honest observer scored it at or
above the threshold, as the simulator's report counts it), and the local
suspicions the protocol's hysteresis (`protocol/src/suspicion.rs`: raise
after `--raise-after` windows >= 0.9, clear after 3 windows < 0.5) would
raise against honest subjects and against attackers. With `--scenario`,
window recall is also given per `[[attackers]]` entry (`kind@intensity`),
each attacker matched to its entry by kind and start time.
"""

import argparse
import json
import tomllib

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

WARMUP_MS = 60_000
# The protocol's suspicion defaults (protocol/src/suspicion.rs,
# `SuspicionPolicy::default`); a scenario's `[detection]` overrides them.
POLICY = {"raise": 0.95, "clear": 0.5, "raise_after": 2, "raise_at_once": 1.0, "clear_after": 3}


def policy_of(scenario=None, **flags):
    """The suspicion thresholds: defaults, then the scenario's `[detection]`
    section, then the flags that are not None."""
    p = dict(POLICY)
    if scenario:
        with open(scenario, "rb") as f:
            section = tomllib.load(f).get("detection", {})
        p.update({k: v for k, v in section.items() if k in POLICY})
    p.update({k: v for k, v in flags.items() if v is not None})
    return p


def quantised(score):
    """Scores as the protocol compares them: integer units of 1/10,000
    (`Score::quantise`)."""
    x = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=1.0)
    return np.round(np.clip(x, 0.0, 1.0) * 10_000).astype(np.int64)


def raises(order, score, observer, subject, honest_observer, benign, policy):
    """(raises against honest subjects, raises against attackers) when each
    (observer, subject) pair's rows are fed in time order."""
    q = quantised(score)
    up, down, at_once = (quantised(np.float64(policy[k])) for k in ("raise", "clear", "raise_at_once"))
    false, true, state = 0, 0, {}
    for i in order:
        if not honest_observer[i]:
            continue
        key = (observer[i], subject[i])
        high, low, raised = state.get(key, (0, 0, False))
        high = high + 1 if q[i] >= up else 0
        low = low + 1 if q[i] < down else 0
        if not raised and (high >= policy["raise_after"] or q[i] >= at_once):
            raised = True
            if benign[i]:
                false += 1
            else:
                true += 1
        elif raised and low >= policy["clear_after"]:
            raised = False
        state[key] = (high, low, raised)
    return false, true


def entries_of(scenario, kind, subject, fraction, time_ms):
    """Subject -> "kind@intensity" of its `[[attackers]]` entry: the entry of
    its kind with the latest start at or before its first attacked row."""
    with open(scenario, "rb") as f:
        attackers = tomllib.load(f).get("attackers", [])
    first = {}
    for i in np.flatnonzero(fraction > 0):
        s = subject[i]
        first[s] = min(first.get(s, time_ms[i]), time_ms[i])
    out = {}
    for s, t in first.items():
        k = kind[np.flatnonzero(subject == s)[0]]
        starts = [a for a in attackers if a["kind"] == k and a["start_s"] * 1000 <= t]
        if starts:
            a = max(starts, key=lambda a: a["start_s"])
            out[s] = f"{k}@{a.get('intensity', 1.0)}"
    return out


def window_recall(rows, high, subject, window, label):
    """Share of malicious (subject, window) pairs among `rows` with at least
    one high row, by `label(subject)`."""
    caught = {}
    for i in rows:
        key = (subject[i], window[i])
        caught[key] = caught.get(key, False) or bool(high[i])
    total, hit = {}, {}
    for (s, _), c in caught.items():
        g = label(s)
        total[g] = total.get(g, 0) + 1
        hit[g] = hit.get(g, 0) + int(c)
    return {g: round(hit[g] / total[g], 4) for g in sorted(total)}


def evaluate(dataset, models, scenario=None, policy=None, window_ms=5_000):
    """One result dict per model path (what `main` prints)."""
    policy = policy or policy_of(scenario)
    table = pq.read_table(f"{dataset}/features.parquet")
    cols = table.column_names
    names = cols[cols.index("subject") + 1 : cols.index("malicious")]
    x = np.stack([table.column(c).to_numpy() for c in names], axis=1).astype(np.float32)
    kind = np.asarray(table.column("attack").to_pylist(), dtype=object)
    fraction = table.column("attack_fraction").to_numpy()
    malicious = table.column("malicious").to_numpy(zero_copy_only=False)
    observer = np.asarray(table.column("observer").to_pylist(), dtype=object)
    subject = np.asarray(table.column("subject").to_pylist(), dtype=object)
    time_ms = table.column("time_ms").to_numpy()
    # Windows as the simulator's report buckets them: simulated time over
    # the report interval (5 s by default).
    window = time_ms // window_ms
    attackers = set(subject[kind != "none"])
    honest_observer = np.array([o not in attackers for o in observer])
    counted = honest_observer & (time_ms >= WARMUP_MS)
    benign = (kind == "none") & (fraction == 0) & (time_ms >= WARMUP_MS)
    order = np.lexsort((time_ms, subject, observer))
    attacked = np.flatnonzero(counted & malicious)
    kind_of = dict(zip(subject[attacked], kind[attacked]))
    entry_of = entries_of(scenario, kind, subject, fraction, time_ms) if scenario else None

    for path in models:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        score = np.concatenate(
            [session.run(None, {feed: x[i : i + 200_000]})[0][:, 0] for i in range(0, len(x), 200_000)]
        )
        high = quantised(score) >= quantised(np.float64(policy["raise"]))
        out = {
            "model": path,
            "policy": policy,
            "rows": int(counted.sum()),
            "honest_rows_high": int((high & counted & (kind == "none")).sum()),
            "recall_by_kind": {
                k: round(float(high[counted & malicious & (kind == k)].mean()), 4)
                for k in sorted(set(kind[malicious]))
            },
        }
        out["window_recall_by_kind"] = window_recall(attacked, high, subject, window, kind_of.get)
        if entry_of is not None:
            out["window_recall_by_entry"] = window_recall(
                attacked, high, subject, window, lambda s: entry_of.get(s, kind_of[s])
            )
        out["false_raises"], out["true_raises"] = raises(
            order, score, observer, subject, honest_observer, benign, policy
        )
        yield out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--raise", type=float, dest="raise_", help="raise threshold (default 0.95)")
    ap.add_argument("--raise-after", type=int, help="consecutive high windows that raise (default 2)")
    ap.add_argument("--raise-at-once", type=float, help="score that raises on one window (default 1.0)")
    ap.add_argument("--scenario", help="the scenario file, for window recall per attacker entry")
    ap.add_argument("--window-ms", type=int, default=5_000, help="the scenario's report interval")
    args = ap.parse_args()
    policy = policy_of(
        args.scenario, **{"raise": args.raise_, "raise_after": args.raise_after, "raise_at_once": args.raise_at_once}
    )
    for out in evaluate(args.dataset, args.models, args.scenario, policy, args.window_ms):
        print(json.dumps(out))


if __name__ == "__main__":
    main()
