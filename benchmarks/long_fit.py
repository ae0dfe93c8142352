"""Late epochs of a long MNIST fit: where subnormal floats slow training down, and flushing them.

With Adam, an L2 penalty and input features that are always zero (MNIST's border
pixels), the weights of those features and their Adam moments shrink
geometrically, and after a few epochs fall below the smallest normal float.
Every operation on such a subnormal value takes the CPU's slow path, in
scikit-learn and anymlp alike. ``anymlp.set_config(flush_denormals=True)``
flushes them to zero instead.

Per repeat, one after another in a rotated order: scikit-learn, anymlp and
anymlp with ``flush_denormals=True``, each a fit of ``--epochs`` epochs on the
same data with the same hyperparameters. Reported per contender: the seconds of
each epoch (median over repeats), the median over epochs 2-3 ("early") and over
the last four ("late"), the late/early slowdown, ratios to scikit-learn, the
subnormal values left in the weights and Adam moments, and test accuracy.
scikit-learn's epochs are timed from a hook on its once-per-epoch
``_update_no_improvement_count``.

Usage::

    python benchmarks/long_fit.py                      # config A, 12 epochs, 3 repeats
    python benchmarks/long_fit.py --config D --epochs 20 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import (  # noqa: E402
    CONFIGS, DataCache, limit_threads, machine_info, rotated, sklearn_params, write_report)

HERE = Path(__file__).resolve().parent
CONTENDERS = ("sklearn", "anymlp", "anymlp-flush")


def subnormal_count(arrays) -> int:
    count = 0
    for a in arrays:
        a = np.asarray(a)
        count += int(np.sum((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))
    return count


class EpochClock:
    """Seconds of each epoch, from the fit's start (the first epoch includes the fit's setup)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._last = time.perf_counter()

    def tick(self):
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now

    def on_epoch_end(self, estimator, record):  # anymlp's callback hook
        self.tick()


def fit_sklearn(params, X, y):
    from sklearn.neural_network import MLPClassifier
    from sklearn.neural_network._multilayer_perceptron import BaseMultilayerPerceptron

    clock = EpochClock()
    original = BaseMultilayerPerceptron._update_no_improvement_count

    def timed(self, *args, **kwargs):
        clock.tick()
        return original(self, *args, **kwargs)

    BaseMultilayerPerceptron._update_no_improvement_count = timed
    try:
        model = MLPClassifier(**params).fit(X, y)
    finally:
        BaseMultilayerPerceptron._update_no_improvement_count = original
    state = [*model.coefs_, *model._optimizer.ms, *model._optimizer.vs]
    return model, clock.seconds, subnormal_count(state)


def fit_anymlp(params, X, y, flush: bool):
    import anymlp

    clock = EpochClock()
    with anymlp.config_context(flush_denormals=flush):
        model = anymlp.MLPClassifier(**params, callbacks=[clock]).fit(X, y)
    state = model._optimizer.state
    return model, clock.seconds, subnormal_count([model._theta, state.m, state.v])


def run(args) -> dict:
    cfg = CONFIGS[args.config]
    if cfg.solver != "adam":
        raise SystemExit(f"config {cfg.name} uses {cfg.solver}; this benchmark is about Adam's moments")
    data = DataCache(args.train_rows)
    X, y, X_test = data.get("numpy", cfg.dtype)
    y_test = data.y_test(cfg.dtype)
    params = sklearn_params(cfg, args.epochs, args.seed)
    fits = {
        "sklearn": lambda: fit_sklearn(params, X, y),
        "anymlp": lambda: fit_anymlp(params, X, y, flush=False),
        "anymlp-flush": lambda: fit_anymlp(params, X, y, flush=True),
    }
    import anymlp

    with anymlp.config_context(kernels="numba"), warnings.catch_warnings():  # numba loads outside the clock
        warnings.simplefilter("ignore")
        fit_anymlp({**params, "max_iter": 1}, X[:2000], y[:2000], flush=True)
    raw = {name: {"epoch_seconds": [], "subnormals": [], "test_accuracy": []} for name in CONTENDERS}
    for repeat in range(args.repeats):
        for name in rotated(list(CONTENDERS), repeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, seconds, subnormals = fits[name]()
            raw[name]["epoch_seconds"].append(seconds)
            raw[name]["subnormals"].append(subnormals)
            raw[name]["test_accuracy"].append(float(np.mean(np.asarray(model.predict(X_test)) == y_test)))
            print(f"  repeat {repeat + 1} {name:13s} " + " ".join(f"{s:.3f}" for s in seconds)
                  + f"  subnormals {subnormals}", flush=True)
    return {"config": cfg.name, "describe": cfg.describe(), "raw": raw, "summary": summarize(raw)}


def summarize(raw: dict) -> dict:
    summary = {}
    for name, runs in raw.items():
        per_epoch = [statistics.median(epoch) for epoch in zip(*runs["epoch_seconds"])]
        early, late = statistics.median(per_epoch[1:3]), statistics.median(per_epoch[-4:])
        summary[name] = {"per_epoch": per_epoch, "early": early, "late": late, "late_over_early": late / early,
                         "subnormals": statistics.median(runs["subnormals"]),
                         "test_accuracy": statistics.median(runs["test_accuracy"])}
    for name in CONTENDERS:
        for period in ("early", "late"):
            summary[name][f"{period}_vs_sklearn"] = summary[name][period] / summary["sklearn"][period]
    return summary


def print_table(result: dict) -> None:
    print(f"\n{result['config']}: {result['describe']}")
    print(f"{'contender':14s} {'early s/ep':>10s} {'late s/ep':>10s} {'late/early':>10s} "
          f"{'early/skl':>9s} {'late/skl':>9s} {'subnormals':>10s} {'test acc':>8s}")
    for name, s in result["summary"].items():
        print(f"{name:14s} {s['early']:10.3f} {s['late']:10.3f} {s['late_over_early']:10.2f} "
              f"{s['early_vs_sklearn']:9.2f} {s['late_vs_sklearn']:9.2f} {s['subnormals']:10.0f} "
              f"{s['test_accuracy']:8.4f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="A", help="an Adam config of benchmarks/mnist.py (A, B or D)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-rows", type=int, default=60000)
    p.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads (default: library defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.epochs < 6:
        raise SystemExit("--epochs must be at least 6: early is epochs 2-3, late the last four")
    _limiter = limit_threads(args.threads)  # noqa: F841 - keeps the cap alive
    started = dt.datetime.now().isoformat(timespec="seconds")
    result = run(args)
    print_table(result)
    report = {"benchmark": "long_fit", "command": shlex.join([Path(sys.executable).name, *sys.argv]),
              "started": started, "finished": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": machine_info(), "args": vars(args), **result}
    write_report(args.out or HERE / "results" / f"long-fit-{dt.date.today()}-{socket.gethostname()}.json", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
