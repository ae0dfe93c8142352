"""Memory stress: many small fits and partial_fits of anymlp, watching the process RSS.

Runs ``--iterations`` rounds; each round does one small ``fit`` of an MLPClassifier and an
MLPRegressor and a few ``partial_fit`` calls on a long-lived classifier, on the chosen
backend. RSS is read from ``/proc/self/statm`` every ``--every`` rounds. After the
warm-up rounds (imports, caches, allocator pools filling up) the RSS must stay within
``--max-growth-mb`` of its post-warm-up value; otherwise the script exits 1.

    python benchmarks/stress.py                   # 300 rounds on NumPy, about 10-30 s
    python benchmarks/stress.py --backend torch
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings

import numpy as np

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_mb() -> float:
    """Resident set size of this process, from /proc/self/statm (second field, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def make_data(rng, n=200, d=20, classes=3):
    X = rng.standard_normal((n, d)).astype(np.float32)
    y_cls = rng.integers(0, classes, n)
    y_reg = X[:, :3].sum(axis=1)
    return X, y_cls, y_reg


def one_round(i, rng, backend, online):
    from anymlp import MLPClassifier, MLPRegressor

    X, y_cls, y_reg = make_data(rng)
    solver = ("adam", "sgd", "lbfgs")[i % 3]
    MLPClassifier(hidden_layer_sizes=(16,), solver=solver, max_iter=5, random_state=i, backend=backend).fit(X, y_cls)
    MLPRegressor(hidden_layer_sizes=(8, 8), solver=solver, max_iter=5, random_state=i, backend=backend).fit(X, y_reg)
    for _ in range(3):
        online.partial_fit(X, y_cls, classes=np.arange(3))
    online.predict_proba(X)


def run(iterations, every, warmup, backend):
    from anymlp import MLPClassifier

    rng = np.random.default_rng(0)
    online = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, backend=backend)
    samples = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning from the deliberately short fits
        for i in range(iterations):
            one_round(i, rng, backend, online)
            if (i + 1) % every == 0 or i + 1 == warmup:
                gc.collect()
                samples.append((i + 1, rss_mb()))
                print(f"round {i + 1:>5}: RSS {samples[-1][1]:8.1f} MB", flush=True)
    return samples, time.perf_counter() - start


def verdict(samples, warmup, max_growth_mb):
    """``(growth_mb, ok)``: the largest RSS after warm-up above the RSS at warm-up."""
    baseline = next(mb for i, mb in samples if i >= warmup)
    after = [mb for i, mb in samples if i >= warmup]
    growth = max(after) - baseline
    return growth, growth <= max_growth_mb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--every", type=int, default=25, help="read RSS every this many rounds")
    p.add_argument("--warmup", type=int, default=50, help="rounds before the baseline is taken")
    p.add_argument("--max-growth-mb", type=float, default=8.0)
    p.add_argument("--backend", default="numpy")
    args = p.parse_args(argv)
    print(f"RSS at start {rss_mb():.1f} MB; {args.iterations} rounds on {args.backend}")
    samples, seconds = run(args.iterations, args.every, args.warmup, args.backend)
    growth, ok = verdict(samples, args.warmup, args.max_growth_mb)
    print(
        f"{args.iterations} rounds in {seconds:.1f} s; RSS growth after warm-up (round {args.warmup}): "
        f"{growth:+.1f} MB (bound {args.max_growth_mb} MB): {'OK' if ok else 'GROWING'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
