"""Host time per training step: a network so small that its arithmetic is negligible.

What a step costs the Python side (argument checks, kernel choice, views, dispatch of each
array operation) bounds a GPU step at small batches, where every kernel finishes in a few
microseconds: the host cannot launch work faster than it prepares it. On the CPU the
same cost is most of a small network's step. Measured on 20 features, hidden (32, 32),
10 classes, batch 200, Adam, 20000 rows (100 steps an epoch), one thread for every
library (BLAS and torch), so that the figure is the host's work and not thread wake-ups:

- anymlp-numpy: NumPy input, the numba kernels (``kernels="numba"``, as large fits get);
- anymlp-numpy-reference: NumPy input, the portable code (``kernels="array_api"``, as
  fits too small to load numba get);
- anymlp-torch: torch CPU tensors, torch's fused ops;
- sklearn: scikit-learn's ``MLPClassifier``;
- torch loop: the plain PyTorch loop of ``mnist.py`` (autograd, ``torch.optim.Adam``);
- torch floor: the operations anymlp-torch launches, written out by hand in one function
  (rows by ``index_select``, ``addmm``, ``clamp_min_``, ``softmax``, ``xlogy``, ``mm`` with
  ``out=`` into one flat gradient, ``threshold_backward``, two ``_fused_adam_``): what the
  step would cost with no dispatch layer at all.

Each fit runs ``--epochs`` epochs; reported is wall time per step, median (and min) over
``--repeats`` rounds, the contenders in an order rotated each round, with the ratio to
the torch floor.

    python benchmarks/step_overhead.py [--repeats 9] [--epochs 3]
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
from mnist import Config, TorchLoop, machine_info, write_report  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS, FEATURES, HIDDEN, CLASSES, BATCH, ALPHA, LR = 20000, 20, (32, 32), 10, 200, 1e-4, 1e-3
CONTENDERS = ("anymlp-numpy", "anymlp-numpy-reference", "anymlp-torch", "sklearn", "torch loop", "torch floor")


def anymlp_fit(X, y, epochs, kernels):
    import anymlp

    model = anymlp.MLPClassifier(**_params(epochs))
    with anymlp.config_context(kernels=kernels):
        model.fit(X, y)


def sklearn_fit(X, y, epochs):
    from sklearn.neural_network import MLPClassifier

    MLPClassifier(**_params(epochs)).fit(X, y)


def _params(epochs):
    return dict(hidden_layer_sizes=HIDDEN, solver="adam", batch_size=BATCH, alpha=ALPHA, learning_rate_init=LR,
                max_iter=epochs, tol=0.0, n_iter_no_change=10**9, random_state=0)


def torch_loop_fit(X, y, epochs):
    TorchLoop(Config("step", HIDDEN, "adam", BATCH, LR, alpha=ALPHA), epochs, seed=0).fit(X, y)


def torch_floor_fit(X, y, epochs):
    """anymlp-torch's launches for each step, by hand: parameters in one flat tensor, the
    gradient written into one flat tensor, the loss parts kept on the device."""
    import torch

    units = (X.shape[1], *HIDDEN, CLASSES)
    shapes = list(zip(units[:-1], units[1:]))
    n_coef = sum(a * b for a, b in shapes)
    theta = torch.empty(n_coef + sum(units[1:])).uniform_(-0.1, 0.1)
    m, v, grad = torch.zeros_like(theta), torch.zeros_like(theta), torch.empty_like(theta)
    Y = torch.nn.functional.one_hot(y, CLASSES).to(X.dtype)
    step_count = torch.full((), torch.finfo(torch.float32).max)
    n_rows = torch.full((), float(BATCH))
    eps = torch.finfo(X.dtype).eps

    def views(flat):
        weights, biases, start = [], [], 0
        for a, b in shapes:
            weights.append(flat[start : start + a * b].view(a, b))
            start += a * b
        for b in units[1:]:
            biases.append(flat[start : start + b])
            start += b
        return weights, biases

    def adam(part, decay):
        torch._fused_adam_([theta[part]], [grad[part]], [m[part]], [v[part]], [], [step_count], lr=LR, beta1=0.9,
                           beta2=0.999, weight_decay=decay, eps=1e-8, amsgrad=False, maximize=False, grad_scale=n_rows)

    losses = []
    for _ in range(epochs):
        order = torch.randperm(X.shape[0])
        for start in range(0, X.shape[0] - BATCH + 1, BATCH):
            index = order[start : start + BATCH]
            Xb, Yb = X.index_select(0, index), Y.index_select(0, index)
            (W1, W2, W3), (b1, b2, b3) = views(theta)
            (G1, G2, G3), (g1, g2, g3) = views(grad)
            a1 = torch.addmm(b1, Xb, W1).clamp_min_(0)
            a2 = torch.addmm(b2, a1, W2).clamp_min_(0)
            p = torch.softmax(torch.addmm(b3, a2, W3), dim=1)
            losses.append((torch.special.xlogy(Yb, p.clamp(eps, 1 - eps)).sum(0), torch.dot(theta[:n_coef], theta[:n_coef])))
            d = p.sub_(Yb)
            for a, W, G, g in ((a2, W3, G3, g3), (a1, W2, G2, g2), (Xb, W1, G1, g1)):
                torch.mm(a.T, d, out=G)
                torch.sum(d, 0, out=g)
                if a is not Xb:
                    d = d @ W.T
                    torch.ops.aten.threshold_backward.grad_input(d, a, 0, grad_input=d)
            adam(slice(0, n_coef), ALPHA / BATCH)
            adam(slice(n_coef, None), 0.0)
        # The epoch's parts of both kinds in one device-to-host read, as anymlp's epoch end does.
        float(torch.cat([torch.stack(kind).reshape(-1) for kind in zip(*losses)]).sum())
        losses.clear()


def run(name, data, epochs):
    X, y, Xt, yt = data
    if name == "anymlp-numpy":
        anymlp_fit(X, y, epochs, "numba")
    elif name == "anymlp-numpy-reference":
        anymlp_fit(X, y, epochs, "array_api")
    elif name == "anymlp-torch":
        anymlp_fit(Xt, yt, epochs, "auto")
    elif name == "sklearn":
        sklearn_fit(X, y, epochs)
    elif name == "torch loop":
        torch_loop_fit(Xt, yt, epochs)
    else:
        torch_floor_fit(Xt, yt, epochs)


def timed_steps(data, repeats, epochs) -> dict:
    """Microseconds per step of each contender's fits, the order rotated each round."""
    steps = epochs * (ROWS // BATCH)
    for name in CONTENDERS:  # warm-up: imports, numba's load, first calls
        run(name, data, 1)
    raw = {name: [] for name in CONTENDERS}
    for r in range(repeats):
        for name in CONTENDERS[r % len(CONTENDERS):] + CONTENDERS[: r % len(CONTENDERS)]:
            start = time.perf_counter()
            run(name, data, epochs)
            raw[name].append((time.perf_counter() - start) / steps * 1e6)
    return raw


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are deliberately few
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    data = (X, y, torch.from_numpy(X), torch.from_numpy(y))
    with threadpool_limits(1):
        raw = timed_steps(data, args.repeats, args.epochs)
    floor = statistics.median(raw["torch floor"])
    print(f"\n{'contender':<24} {'us/step':>8} {'(min)':>7} {'x floor':>8}")
    summary = {}
    for name in CONTENDERS:
        med = statistics.median(raw[name])
        summary[name] = {"median_us_per_step": med, "min_us_per_step": min(raw[name]), "x_torch_floor": med / floor}
        print(f"{name:<24} {med:>8.0f} {min(raw[name]):>7.0f} {med / floor:>8.2f}")
    report = {
        "benchmark": "step_overhead",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "problem": {"rows": ROWS, "features": FEATURES, "hidden": HIDDEN, "classes": CLASSES, "batch": BATCH,
                    "solver": "adam", "epochs": args.epochs, "threads": 1},
        "machine": machine_info(),
        "raw_us_per_step": raw,
        "summary": summary,
    }
    write_report(args.out or HERE / "results" / f"step-overhead-{dt.date.today()}-{socket.gethostname()}.json", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
