#!/usr/bin/env python3
"""onnxruntime's side of `scoring-vs-ort`: rows/s of a model at given batch
sizes, with the cost of an empty call (an Identity graph of the same input
shape, batch 1) measured in the same process and subtracted per call.

    python3 benches/ort_bench.py MODEL.onnx COLUMNS SECONDS BATCH [BATCH ...]

Prints one JSON object: {"empty_call_s": ..., "batches": {"1": {"call_s": ...,
"rows_per_s": ...}, ...}}. One intra-op thread, as tract runs.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def per_call(session, feed, seconds):
    # Warm up, then repeat in rounds until `seconds` have passed; the best
    # round's mean is the figure (least disturbed by the rest of the box).
    for _ in range(50):
        session.run(None, feed)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        n = 200
        t = time.perf_counter()
        for _ in range(n):
            session.run(None, feed)
        dt = time.perf_counter() - t
        spent += dt
        best = min(best, dt / n)
    return best


def main():
    model, cols, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    batches = [int(b) for b in sys.argv[4:]]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    ident = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "empty",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, cols])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, cols])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    empty = ort.InferenceSession(ident.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    empty_s = per_call(empty, {"x": rng.random((1, cols), dtype=np.float32)}, seconds)
    out = {"empty_call_s": empty_s, "batches": {}}
    for b in batches:
        x = (rng.random((b, cols), dtype=np.float32) * 3).astype(np.float32)
        call = per_call(s, {name: x}, seconds)
        net = max(call - empty_s, 1e-9)
        out["batches"][str(b)] = {"call_s": call, "net_call_s": net, "rows_per_s": b / net}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
