#!/usr/bin/env python3
"""Train the shipped detectors on simulator datasets and export them as ONNX.

    python3 models/training/train.py DATASET_DIR [DATASET_DIR ...] --out models

Reads `features.parquet` from each dataset (written by
`sentinel-sim run ... --dataset DIR`), never re-implementing feature
extraction: the columns are the ones the Rust extractor wrote, named by the
dataset's `sentinel.feature_schema`.

Writes, for each model, `NAME.onnx` and its manifest `NAME.json` (sha256,
feature schema, training data hash, metrics):
- `mlp-classifier`: StandardScaler + MLP classifier (trained here with
  input dropout, `fit_classifier`); the score is the probability of the
  malicious class.
- `mlp-autoencoder`: StandardScaler + MLP autoencoder trained on benign rows
  only; the score is e / (e + e0), e the mean squared reconstruction error
  in scaled space and e0 its 99.9th percentile on benign training rows, so
  unseen behaviour scores high without any label.

Rows whose window was only partly under attack (0 < attack_fraction < 1)
are left out of training and of the metrics. Subjects are split 80/20 into
train and validation by a hash of their id, so no subject is in both.

Deterministic: fixed seeds, one BLAS thread; the same datasets give the
same models and metrics.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

FEATURE_SCHEMA = "sentinel-features/4"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OPSET = 17
INPUT = "features"
OUTPUT = "score"
RAISE = 0.9


def load(dirs, intensities=False):
    """Feature matrix, labels, attack kinds, subjects, column names of the
    datasets, and each row's attacker intensity: with `intensities`, from
    the `[[attackers]]` entry of the dataset's scenario file in
    simulator/scenarios/ (1.0 for honest rows); else 1.0 throughout."""
    import tune  # the scenario-entry matching is shared with tune.py

    xs, ys, kinds, subjects, strengths, names = [], [], [], [], [], None
    for d in dirs:
        table = pq.read_table(os.path.join(d, "features.parquet"))
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        if meta.get("sentinel.feature_schema") != FEATURE_SCHEMA:
            sys.exit(f"{d}: feature schema {meta.get('sentinel.feature_schema')!r}, expected {FEATURE_SCHEMA!r}")
        cols = table.column_names
        cols = cols[cols.index("subject") + 1 : cols.index("malicious")]
        if names is None:
            names = cols
        elif cols != names:
            sys.exit(f"{d}: feature columns differ from the first dataset's")
        frac = table.column("attack_fraction").to_numpy()
        keep = (frac == 0.0) | (frac >= 1.0)
        kind = np.asarray(table.column("attack").to_pylist(), dtype=object)
        subject = np.asarray(table.column("subject").to_pylist(), dtype=object)
        entry = {}
        if intensities:
            scenario = os.path.join(ROOT, "simulator", "scenarios", f"{meta.get('sentinel.scenario')}.toml")
            if not os.path.exists(scenario):
                sys.exit(f"{d}: its scenario file {scenario} is needed for attacker intensities")
            entry = tune.entries_of(scenario, kind, subject, frac, table.column("time_ms").to_numpy())
        xs.append(np.stack([table.column(c).to_numpy() for c in names], axis=1)[keep])
        ys.append(table.column("malicious").to_numpy(zero_copy_only=False)[keep])
        kinds.append(kind[keep])
        subjects.append(subject[keep])
        strengths.append(np.array([float(entry[s].split("@")[1]) if s in entry else 1.0 for s in subject[keep]]))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(bool)
    return x, y, np.concatenate(kinds), np.concatenate(subjects), names, np.concatenate(strengths)


def data_hash(x, y):
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y.astype(np.uint8)).tobytes())
    return h.hexdigest()


def validation_mask(subjects):
    """20% of subjects, chosen by a hash of the id (stable across runs)."""
    return np.array([int(hashlib.sha256(s.encode()).hexdigest()[:8], 16) % 5 == 0 for s in subjects])


def metrics(score, y, kinds):
    high = score >= RAISE
    out = {"threshold": RAISE, "rows": int(len(y))}
    if y.any() and (~y).any():
        out["auc"] = round(float(roc_auc_score(y, score)), 4)
    out["recall"] = round(float(high[y].mean()), 4) if y.any() else None
    out["false_positive_rate"] = round(float(high[~y].mean()), 6) if (~y).any() else None
    per = {}
    for k in sorted(set(kinds[y])):
        m = y & (kinds == k)
        per[k] = round(float(high[m].mean()), 4)
    out["recall_by_kind"] = per
    return out


def layer_nodes(mlp, weights, biases, prefix, x):
    """MatMul + Add (+ Relu between layers) for each fitted layer of an
    sklearn MLP; returns (nodes, initialisers, the last pre-activation)."""
    nodes, inits = [], []
    for i, (w, b) in enumerate(zip(weights, biases)):
        wn, bn, m, a = f"{prefix}w{i}", f"{prefix}b{i}", f"{prefix}m{i}", f"{prefix}a{i}"
        inits += [numpy_helper.from_array(w.astype(np.float32), wn),
                  numpy_helper.from_array(b.reshape(1, -1).astype(np.float32), bn)]
        nodes += [helper.make_node("MatMul", [x, wn], [m]), helper.make_node("Add", [m, bn], [a])]
        x = a
        if i + 1 < len(weights):
            x = f"{prefix}h{i}"
            nodes.append(helper.make_node("Relu", [a], [x]))
    # Relu between layers; the output activation is applied by the caller.
    assert mlp.activation == "relu" and mlp.out_activation_ in ("logistic", "identity")
    return nodes, inits, x


def folded(scaler, weights, biases):
    """The MLP's layers with the standardisation folded into the first one:
    ((x - mean) / scale) W + b = x (W / scale) + (b - (mean / scale) W).
    One matrix product instead of a broadcast Sub and Div per row, which
    tract runs several times slower than the whole MLP."""
    w0 = weights[0] / scaler.scale_[:, None]
    b0 = biases[0] - (scaler.mean_ / scaler.scale_) @ weights[0]
    return [w0] + list(weights[1:]), [b0] + list(biases[1:])


def make_model(name, nodes, inits, n_features):
    """A plain ONNX model (opset 17, operators tract runs): input `features`
    `[N, n_features]`, one output `score` `[N, 1]`."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "sentinel-mesh models/training/train.py"
    model.producer_version = "2"
    model.doc_string = f"Sentinel Mesh detector {name}, feature schema {FEATURE_SCHEMA}"
    onnx.checker.check_model(model)
    return model


def ignoring(scaler, ignored):
    """Makes the model blind to the `ignored` column indices: their
    standardised value is x / 1e9, about 0 for any input, so the folded
    first-layer weights of those columns are about 0 too."""
    for i in ignored:
        scaler.mean_[i] = 0.0
        scaler.scale_[i] = 1e9
    return scaler


# Input dropout of the classifier: at every training step each standardised
# input is set to 0 (its mean, which honest rows dominate) with this
# probability, except the --evidence columns. A network trained without it
# leans on the one column that separates each attack kind best in training
# (a liar's traffic mismatch, a flooder's rate-limited count) and misses an
# attacker weaker than any it saw; with it, it has to use every column that
# tells (the liar's RTT and all-links disagreement, the flooder's message
# rate). Chosen on detect-tune, never detect-eval (models/training/README.md).
INPUT_DROPOUT = 0.2


class Fitted:
    """A fitted ReLU MLP in the shape `layer_nodes` reads."""

    activation = "relu"
    out_activation_ = "logistic"

    def __init__(self, weights, biases):
        self.coefs_, self.intercepts_ = weights, biases

    def logit(self, z):
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            z = z @ w + b
            if i + 1 < len(self.coefs_):
                z = np.maximum(z, 0.0)
        return z[:, 0]


def fit_classifier(z, t, seed, kept, dropout=INPUT_DROPOUT, hidden=(32, 16), alpha=1e-4,
                   lr=1e-3, batch=256, max_epochs=25, patience=4):
    """A ReLU MLP with a logistic output trained by Adam on log loss plus L2
    (as scikit-learn's MLPClassifier, which has no input dropout), with
    input dropout on every column but `kept`, stopped early on a 10% holdout
    (the weights of its best epoch are kept, with the first layer scaled by
    the dropout rule). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    sizes = [z.shape[1], *hidden, 1]
    weights = [rng.normal(0.0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(sizes, sizes[1:])]
    biases = [np.zeros(b) for b in sizes[1:]]
    params = weights + biases
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    holdout = rng.random(len(t)) < 0.1
    zt, tt, zh, th = z[~holdout], t[~holdout], z[holdout], t[holdout]
    net = Fitted(weights, biases)

    def loss(x, y):
        logit = net.logit(x)
        return float(np.mean(np.logaddexp(0.0, logit) - y * logit))

    best, best_params, stale, step = np.inf, None, 0, 0
    for _ in range(max_epochs):
        order = rng.permutation(len(tt))
        for start in range(0, len(order), batch):
            i = order[start:start + batch]
            mask = rng.random((len(i), z.shape[1])) >= dropout
            mask[:, kept] = True
            acts = [zt[i] * mask]
            for k, (w, b) in enumerate(zip(weights, biases)):
                a = acts[-1] @ w + b
                acts.append(np.maximum(a, 0.0) if k + 1 < len(weights) else a)
            grad = (1.0 / (1.0 + np.exp(-acts[-1][:, 0])) - tt[i])[:, None] / len(i)
            grads_w, grads_b = [], []
            for k in reversed(range(len(weights))):
                grads_w.insert(0, acts[k].T @ grad + alpha * weights[k])
                grads_b.insert(0, grad.sum(axis=0))
                if k > 0:
                    grad = (grad @ weights[k].T) * (acts[k] > 0)
            step += 1
            for p, g, (m, v) in zip(params, grads_w + grads_b, moments):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        held = loss(zh, th)
        if held < best - 1e-5:
            best, best_params, stale = held, [p.copy() for p in params], 0
        else:
            stale += 1
            if stale >= patience:
                break
    for p, q in zip(params, best_params):
        p[...] = q
    # The dropout rule at inference: every input is present, so each one
    # that training dropped counts at its expected share (1 - dropout).
    # Without it the scores of unusual but honest rows run high.
    scale = np.full(z.shape[1], 1.0 - dropout)
    scale[kept] = 1.0
    weights[0] *= scale[:, None]
    return net


def classifier(x, y, seed, ignored, kept, dropout=INPUT_DROPOUT):
    # Oversample malicious rows so both classes weigh alike.
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y)
    neg = np.flatnonzero(~y)
    reps = max(1, len(neg) // max(1, len(pos)) // 2)
    idx = np.concatenate([neg, np.repeat(pos, reps)])
    rng.shuffle(idx)
    scaler = ignoring(StandardScaler().fit(x), ignored)
    mlp = fit_classifier(scaler.transform(x[idx]), y[idx].astype(np.float64), seed, kept, dropout)
    weights, biases = folded(scaler, mlp.coefs_, mlp.intercepts_)
    nodes, inits, logit = layer_nodes(mlp, weights, biases, "c", INPUT)
    nodes.append(helper.make_node("Sigmoid", [logit], [OUTPUT]))
    model = make_model("mlp-classifier", nodes, inits, x.shape[1])
    return model, lambda v: 1.0 / (1.0 + np.exp(-mlp.logit(scaler.transform(v))))


def autoencoder(x, y, seed, ignored):
    benign = x[~y]
    scaler = ignoring(StandardScaler().fit(benign), ignored)
    z = scaler.transform(benign)
    ae = MLPRegressor(hidden_layer_sizes=(16, 6, 16), alpha=1e-4, max_iter=40,
                      early_stopping=True, random_state=seed)
    ae.fit(z, z)
    err = ((ae.predict(z) - z) ** 2).mean(axis=1)
    e0 = float(np.quantile(err, 0.999))
    weights, biases = folded(scaler, ae.coefs_, ae.intercepts_)
    nodes, inits, recon = layer_nodes(ae, weights, biases, "e", INPUT)
    # The error is measured in standardised space, so the graph also needs
    # the standardised input: a product with diag(1 / scale) plus a shift,
    # which tract fuses into one matrix kernel.
    inits += [
        numpy_helper.from_array(np.diag(1.0 / scaler.scale_).astype(np.float32), "std_w"),
        numpy_helper.from_array((-scaler.mean_ / scaler.scale_).reshape(1, -1).astype(np.float32), "std_b"),
        numpy_helper.from_array(np.array([[e0]], dtype=np.float32), "ae_e0"),
    ]
    nodes += [
        helper.make_node("MatMul", [INPUT, "std_w"], ["std_m"]),
        helper.make_node("Add", ["std_m", "std_b"], ["scaled"]),
        helper.make_node("Sub", [recon, "scaled"], ["ae_diff"]),
        helper.make_node("Mul", ["ae_diff", "ae_diff"], ["ae_sq"]),
        helper.make_node("ReduceMean", ["ae_sq"], ["ae_err"], axes=[1], keepdims=1),
        helper.make_node("Add", ["ae_err", "ae_e0"], ["ae_den"]),
        helper.make_node("Div", ["ae_err", "ae_den"], [OUTPUT]),
    ]
    model = make_model("mlp-autoencoder", nodes, inits, x.shape[1])

    def score(v):
        zz = scaler.transform(v)
        e = ((ae.predict(zz) - zz) ** 2).mean(axis=1)
        return e / (e + e0)

    return model, score


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", help="dataset directories from sentinel-sim --dataset")
    ap.add_argument("--out", default="models", help="where NAME.onnx and NAME.json go")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--exclude-kinds",
        default="framer",
        help="attack kinds whose rows are left out of training (default: framer, whose harm falls "
        "on its victim's rows, not its own)",
    )
    ap.add_argument(
        "--evidence",
        default="mimic=relay_withheld",
        help="KIND=COLUMN[>=V],...: malicious rows of KIND are trained on only where COLUMN > 0 "
        "(or >= V), for a kind whose harm shows in some observers' rows only "
        "(mimic=relay_withheld: the observers that missed one of its relays); validation keeps "
        "every row",
    )
    ap.add_argument(
        "--ignore-columns",
        default="peer_rtt_med",
        help="feature columns the models are made blind to (default: peer_rtt_med, the absolute "
        "RTT: it says where a node is, not how it behaves, and a model that learns the "
        "simulator's RTTs flags every node of a LAN or a loopback devnet)",
    )
    ap.add_argument(
        "--input-dropout",
        type=float,
        default=INPUT_DROPOUT,
        help=f"the classifier's input dropout (default {INPUT_DROPOUT}; 0 for the extrapolation check)",
    )
    ap.add_argument(
        "--leave-out-below",
        type=float,
        default=0.0,
        help="leave out attackers whose scenario entry's intensity is below this (the extrapolation "
        "check in models/training/README.md: train on strong attackers, score weak ones)",
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    os.makedirs(args.out, exist_ok=True)
    x, y, kinds, subjects, names, strength = load(args.datasets, intensities=args.leave_out_below > 0)
    excluded = sorted(k for k in args.exclude_kinds.split(",") if k)
    keep = ~np.isin(kinds, excluded) & ~(y & (strength < args.leave_out_below))
    x, y, kinds, subjects = x[keep], y[keep], kinds[keep], subjects[keep]
    val = validation_mask(subjects)
    print(f"rows {len(y)} ({int(y.sum())} malicious), validation {int(val.sum())}; kinds {sorted(set(kinds[y]))}")
    dhash = data_hash(x, y)
    train = ~val
    evidence = dict(e.split("=", 1) for e in args.evidence.split(",") if e)
    for kind, rule in sorted(evidence.items()):
        column, _, at_least = rule.partition(">=")
        values = x[:, names.index(column)]
        weak = values < float(at_least) if at_least else values <= 0
        silent = y & (kinds == kind) & weak
        train &= ~silent
        print(f"{kind}: {int((silent & ~val).sum())} training rows without {rule} left out")
    ignored_columns = [c for c in args.ignore_columns.split(",") if c]
    ignored = [names.index(c) for c in ignored_columns]
    kept = sorted({names.index(rule.partition(">=")[0]) for rule in evidence.values()})
    built = (
        classifier(x[train], y[train], args.seed, ignored, kept, args.input_dropout),
        autoencoder(x[train], y[train], args.seed, ignored),
    )
    for model, predict in built:
        name = model.graph.name
        m = metrics(np.asarray(predict(x[val])), y[val], kinds[val])
        path = os.path.join(args.out, f"{name}.onnx")
        data = model.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        manifest = {
            "name": name,
            "kind": "classifier" if "classifier" in name else "autoencoder",
            "file": f"{name}.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "feature_schema": FEATURE_SCHEMA,
            "features": names,
            "input": INPUT,
            "output": OUTPUT,
            "training": {
                "data_sha256": dhash,
                "rows": int(len(y)),
                "malicious_rows": int(y.sum()),
                "attack_kinds": sorted(set(kinds[y])),
                "datasets": [os.path.basename(os.path.normpath(d)) for d in args.datasets],
                "seed": args.seed,
                "excluded_kinds": excluded,
                "evidence": evidence,
                "ignored_columns": ignored_columns,
                "input_dropout": args.input_dropout if name == "mlp-classifier" else 0.0,
                "left_out_below_intensity": args.leave_out_below,
                "command": "python3 models/training/train.py " + shlex.join(sys.argv[1:]),
                "opset": OPSET,
            },
            "metrics": {"validation": m},
        }
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        print(f"{name}: {len(data)} bytes, sha256 {manifest['sha256'][:16]}…, validation {json.dumps(m)}")


if __name__ == "__main__":
    main()
