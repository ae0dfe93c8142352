"""Launch and sync budget of a training step, counted on array_api_strict (runs anywhere).

Prints array operations per step of the stochastic loop (each one a kernel launch on a
GPU) for Adam and SGD at several depths: "backprop" is ``loss_and_grad(..., finish=False)``
(the batch's loss parts and the raw gradient), "update" the optimizer's step, which
finishes the gradient (L2 term, division by the batch size) first. The row gathers are
not counted. Also, and device-to-host reads per epoch for two batch counts. With torch
installed, also the aten operations torch dispatches for the same steps (what a CUDA run
launches), on the reference code and with torch's fused in-place ops.

    python benchmarks/op_count.py [--json]
"""

import json
import sys
import warnings

import numpy as np

import anymlp.training.stochastic as stochastic
from anymlp import MLPClassifier
from anymlp.nn import Architecture, Layout, loss_and_grad
from anymlp.optim.stateful import AdamOptimizer, SGDOptimizer
from anymlp.testing import count_array_ops, count_torch_ops


def ops_per_step(xps, hidden, optimizer):
    device = xps.Device("device1")
    arch = Architecture(Layout((784, *hidden, 10)), "relu", "log_loss")
    rng = np.random.RandomState(0)
    theta = xps.asarray(rng.uniform(-0.05, 0.05, arch.layout.n_params).astype(np.float32), device=device)
    X = xps.asarray(rng.uniform(size=(64, 784)).astype(np.float32), device=device)
    Y = xps.asarray(np.eye(10, dtype=np.float32)[rng.randint(0, 10, 64)], device=device)
    opt = (AdamOptimizer if optimizer == "adam" else SGDOptimizer)(theta, xp=xps, learning_rate_init=1e-3)
    opt.step(theta, loss_and_grad(theta, X, Y, None, arch, 1e-4, xp=xps, finish=False)[1])  # one-time setup uncounted
    with count_array_ops(xps) as backprop:
        _, grad = loss_and_grad(theta, X, Y, None, arch, 1e-4, xp=xps, finish=False)
    with count_array_ops(xps) as update:
        opt.step(theta, grad)
    return sum(backprop.values()), sum(update.values())


def torch_ops_per_step(hidden, optimizer, kernels):
    import array_api_compat.torch as xt
    import torch

    import anymlp

    arch = Architecture(Layout((784, *hidden, 10)), "relu", "log_loss")
    rng = np.random.RandomState(0)
    theta = torch.tensor(rng.uniform(-0.05, 0.05, arch.layout.n_params).astype(np.float32))
    X = torch.tensor(rng.uniform(size=(64, 784)).astype(np.float32))
    Y = torch.tensor(np.eye(10, dtype=np.float32)[rng.randint(0, 10, 64)])
    with anymlp.config_context(kernels=kernels):
        opt = (AdamOptimizer if optimizer == "adam" else SGDOptimizer)(theta, xp=xt, learning_rate_init=1e-3)
        step = lambda: loss_and_grad(theta, X, Y, None, arch, 1e-4, xp=xt, finish=False)  # noqa: E731
        opt.step(theta, step()[1])  # steady state: one-time setup uncounted
        with count_torch_ops() as backprop:
            _, grad = step()
        with count_torch_ops() as update:
            opt.step(theta, grad)
    return sum(backprop.values()), sum(update.values())


def host_reads_per_fit(xps, batch_size, epochs=3):
    device = xps.Device("device1")
    rng = np.random.RandomState(0)
    X = xps.asarray(rng.normal(size=(1000, 20)), device=device)
    y = xps.asarray(rng.randint(0, 3, 1000), device=device)
    reads = []
    original = stochastic.to_host

    def counting(a):
        reads.append(1)
        return original(a)

    stochastic.to_host = counting
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier((16,), batch_size=batch_size, max_iter=epochs, n_iter_no_change=99).fit(X, y)
    finally:
        stochastic.to_host = original
    return len(reads) / epochs


def main():
    import array_api_strict as xps

    rows = []
    for optimizer in ("adam", "sgd"):
        for hidden in [(100,), (512, 512), (512, 512, 512)]:
            backprop, update = ops_per_step(xps, hidden, optimizer)
            rows.append({"optimizer": optimizer, "hidden": list(hidden), "backprop_ops": backprop,
                         "optimizer_ops": update, "total": backprop + update})
    print("array operations per training step (array_api_strict, float32, batch 64); update includes the gradient's finish")
    print(f"{'optimizer':9} {'hidden':16} {'backprop':>8} {'update':>6} {'total':>5}")
    for r in rows:
        print(f"{r['optimizer']:9} {str(tuple(r['hidden'])):16} {r['backprop_ops']:8} {r['optimizer_ops']:6} {r['total']:5}")
    torch_rows = []
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        for optimizer in ("adam", "sgd"):
            for hidden in [(100,), (512, 512), (512, 512, 512)]:
                counts = {k: torch_ops_per_step(hidden, optimizer, k) for k in ("array_api", "auto")}
                torch_rows.append({"optimizer": optimizer, "hidden": list(hidden),
                                   "reference": counts["array_api"], "fused": counts["auto"]})
        print("\naten operations per training step on torch (reference -> fused), backprop + update")
        print(f"{'optimizer':9} {'hidden':16} {'reference':>16} {'fused':>16}")
        for r in torch_rows:
            ref, fused = r["reference"], r["fused"]
            print(f"{r['optimizer']:9} {str(tuple(r['hidden'])):16} {f'{ref[0]} + {ref[1]} = {sum(ref)}':>16} "
                  f"{f'{fused[0]} + {fused[1]} = {sum(fused)}':>16}")
    syncs = {bs: host_reads_per_fit(xps, bs) for bs in (500, 10)}
    print("device-to-host reads per epoch inside the training loop:",
          ", ".join(f"{1000 // bs} batches/epoch: {v:g}" for bs, v in syncs.items()))
    if "--json" in sys.argv:
        print(json.dumps({"ops": rows, "torch_ops": torch_rows, "host_reads_per_epoch": syncs}))


if __name__ == "__main__":
    main()
