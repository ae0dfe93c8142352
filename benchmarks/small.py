"""Small problems: anymlp vs scikit-learn where per-call overhead, not FLOPs, dominates.

- L-BFGS on scikit-learn's digits (1797 x 64), hidden (64,), ``max_iter=200``;
- Adam on ``make_friedman1(20000)``, hidden (100,), ``max_iter=20`` (tol=0, so all run);
- tiny: Adam on make_classification(100), hidden (10,), 200 epochs of one batch, where the
  per-epoch fixed costs (shuffle, loss read-back, bookkeeping) are most of the time, as in a
  grid search over small data. No issue target;
- streaming: 100 ``partial_fit`` calls of 200 rows each (make_classification, 20 features,
  3 classes, hidden (32,)), where each call's fixed cost (validation, label encoding, BLAS
  thread setup) is most of the time. No issue target; reported so the overhead stays seen;
- latency: 1000 ``predict_proba`` calls of one row each on an MNIST-shaped (784 features,
  10 classes) model with hidden (100,), fitted once before the repeats: validation and the
  forward pass's fixed costs, as a model served one request at a time pays them. The
  warm-up loads numba, so the fused kernels run; a process that only loads a pickled model
  runs the reference code instead, about as fast at one row. No issue target.

Each repeat runs both contenders, in an order rotated from repeat to repeat; reported are
the median wall times (of ``fit``, of the ``partial_fit`` calls, or of the predictions),
the ratio anymlp / scikit-learn, and the training score (accuracy or R^2) as a sanity
check. ``--threads`` caps BLAS threads for both.

    python benchmarks/small.py --repeats 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def digits_problem():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    params = dict(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=200, random_state=0)
    return "digits lbfgs (64,)", "classifier", X / 16.0, y, params


def friedman_problem():
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=20000, random_state=0)
    params = dict(hidden_layer_sizes=(100,), solver="adam", max_iter=20, tol=0.0, n_iter_no_change=10**9, random_state=0)
    return "friedman1(20000) adam (100,)", "regressor", X, y, params


def tiny_problem():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=100, n_features=10, random_state=0)
    params = dict(hidden_layer_sizes=(10,), solver="adam", max_iter=200, tol=0.0, n_iter_no_change=10**9,
                  random_state=0)
    return "100 rows adam (10,) 200 epochs", "classifier", X, y, params


PARTIAL_FIT_CHUNK = 200


def streaming_problem():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=100 * PARTIAL_FIT_CHUNK, n_features=20, n_informative=10,
                               n_classes=3, random_state=0)
    params = dict(hidden_layer_sizes=(32,), solver="adam", random_state=0)
    return "100 partial_fit x 200 rows (32,)", "classifier-stream", X, y, params


LATENCY_CALLS = 1000


def latency_problem():
    rng = np.random.default_rng(0)
    X, y = rng.random((2000, 784)).astype(np.float32), rng.integers(0, 10, 2000)
    params = dict(hidden_layer_sizes=(100,), max_iter=3, random_state=0)
    return f"{LATENCY_CALLS} predict_proba x 1 row (100,)", "classifier-latency", X, y, params


def timed_predictions(model, X) -> float:
    start = time.perf_counter()
    for i in range(LATENCY_CALLS):
        model.predict_proba(X[i : i + 1])
    return time.perf_counter() - start


def estimator(library: str, kind: str, params: dict):
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    else:
        from anymlp import MLPClassifier, MLPRegressor
    return (MLPRegressor if kind == "regressor" else MLPClassifier)(**params)


def timed_fit(model, X, y, stream=False) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not stream:
            model.fit(X, y)
        for begin in range(0, len(y) if stream else 0, PARTIAL_FIT_CHUNK):
            rows = slice(begin, begin + PARTIAL_FIT_CHUNK)
            model.partial_fit(X[rows], y[rows], classes=np.unique(y))
    return time.perf_counter() - start


def bench(problem, repeats: int) -> dict:
    name, kind, X, y, params = problem
    stream = kind.endswith("-stream")
    libraries = ["anymlp", "sklearn"]
    import anymlp

    # Warm-up: imports and first-call costs, numba's load included (kernels="auto" would
    # load it inside the first timed fit of a problem this size, or not at all for smaller).
    for lib in libraries:
        with anymlp.config_context(kernels="numba"):
            timed_fit(estimator(lib, kind, {**params, "max_iter": 2}), X, y, stream)
    fitted = {}
    if kind.endswith("-latency"):  # the models are fitted once; the predictions are timed
        for lib in libraries:
            timed_fit(fitted.setdefault(lib, estimator(lib, kind, params)), X, y)
            timed_predictions(fitted[lib], X)
    raw = {lib: [] for lib in libraries}
    scores = {}
    for r in range(repeats):
        for lib in libraries[r % 2 :] + libraries[: r % 2]:
            model = fitted[lib] if lib in fitted else estimator(lib, kind, params)
            raw[lib].append(timed_predictions(model, X) if lib in fitted else timed_fit(model, X, y, stream))
            scores[lib] = float(model.score(X, y))
    med = {lib: statistics.median(t) for lib, t in raw.items()}
    return {"problem": name, "params": params, "seconds": raw, "median_s": med, "ratio": med["anymlp"] / med["sklearn"], "train_score": scores}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_info, threadpool_limits

    limiter = threadpool_limits(args.threads) if args.threads else None  # noqa: F841
    targets = {"digits lbfgs (64,)": 0.5, "friedman1(20000) adam (100,)": 0.75}
    problems = (digits_problem, friedman_problem, tiny_problem, streaming_problem, latency_problem)
    results = [bench(problem(), args.repeats) for problem in problems]
    print(f"\n{'problem':<34} {'anymlp s':>9} {'sklearn s':>9} {'ratio':>6} {'target':>7}  score anymlp/sklearn")
    for r in results:
        limit = targets.get(r["problem"])
        verdict = "" if limit is None else "met" if r["ratio"] <= limit else "NOT met"
        print(
            f"{r['problem']:<34} {r['median_s']['anymlp']:>9.3f} {r['median_s']['sklearn']:>9.3f} {r['ratio']:>6.2f} "
            f"{'-' if limit is None else '<= ' + str(limit):>7}  "
            f"{r['train_score']['anymlp']:.4f}/{r['train_score']['sklearn']:.4f}  {verdict}"
        )
        r["target"], r["met"] = limit, None if limit is None else r["ratio"] <= limit
    import anymlp
    import sklearn

    report = {
        "benchmark": "small",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "versions": {"numpy": np.__version__, "sklearn": sklearn.__version__, "anymlp": anymlp.__version__},
            "threadpools": threadpool_info(),
        },
        "results": results,
    }
    out = args.out or HERE / "results" / f"small-{dt.date.today()}-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
