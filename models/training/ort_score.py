#!/usr/bin/env python3
"""Score rows with onnxruntime, for comparing against tract.

    python3 models/training/ort_score.py MODEL.onnx ROWS.f32 COLUMNS OUT.f32

ROWS.f32 holds little-endian float32 rows of COLUMNS values each; OUT.f32
receives one little-endian float32 score per row.
"""
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, rows, columns, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    x = np.fromfile(rows, dtype="<f4").reshape(-1, columns)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    y = s.run(None, {s.get_inputs()[0].name: x})[0].reshape(-1).astype("<f4")
    y.tofile(out)


if __name__ == "__main__":
    main()
