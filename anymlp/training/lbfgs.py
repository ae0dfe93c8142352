"""The L-BFGS solver: scipy drives a float64 vector on the host, the device evaluates.

Each evaluation sends the parameters to the device once and brings back the
loss and gradient together in one array (one crossing each way). The weights
keep X's dtype; only scipy's own vector is float64.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from anymlp._backend import host_dtype, squared_norm, to_host
from anymlp.nn import loss_and_grad
from anymlp.optim.gradient import weight_decay
from anymlp.training.callbacks import notify


def fit_lbfgs(theta, objective: Callable, *, xp, to_device: Callable, max_iter: int,
              max_fun: int, tol: float, verbose, callbacks=(), estimator=None,
              publish: Callable | None = None):
    """Minimise ``objective(theta) -> (loss, grad)``; returns ``(theta, n_iter, loss)``.

    ``theta`` and the returned parameters are on the device, in the model dtype.
    ``publish(theta, n_iter, loss)`` (called only with callbacks) hands the estimator
    each iteration's parameters before ``on_epoch_end``, so a callback sees that iterate.
    """
    dtype = theta.dtype

    def loss_and_grad(x):
        loss, grad = objective(to_device(np.asarray(x, dtype=host_dtype(dtype))))
        both = to_host(xp.concat([xp.reshape(loss, (1,)), grad]))
        return float(both[0]), both[1:].astype(np.float64)

    iteration = {"n": 0, "t": time.perf_counter(), "begun": 0}

    def evaluate(x):
        """scipy's objective; the first evaluation of an iteration begins its "epoch"."""
        if iteration["begun"] == iteration["n"]:
            iteration["begun"] += 1
            notify(callbacks, "on_epoch_begin", estimator, epoch=iteration["begun"])
        return loss_and_grad(x)

    start = to_host(theta).astype(np.float64)
    last = {"x": start, "fun": None}  # the last completed iteration: what Ctrl-C keeps

    def report(intermediate_result):
        iteration["n"] += 1
        last["x"], last["fun"] = np.array(intermediate_result.x), float(intermediate_result.fun)
        loss = last["fun"]
        if verbose:
            print("Iteration %d, loss = %.8f" % (iteration["n"], loss))
        now = time.perf_counter()
        seconds, iteration["t"] = now - iteration["t"], now
        if callbacks and publish is not None:
            publish(to_device(last["x"].astype(host_dtype(dtype))), iteration["n"], loss)
        notify(callbacks, "on_batch_end", estimator, batch=1, n_batches=1)  # the full batch
        notify(callbacks, "on_epoch_end", estimator, {
            "epoch": iteration["n"], "loss": loss, "validation_score": None,
            "seconds": seconds, "samples_per_second": float("nan"),
        })

    notify(callbacks, "on_fit_begin", estimator, max_epochs=max_iter, n_batches=1)
    try:
        result = scipy.optimize.minimize(
            evaluate if callbacks else loss_and_grad, start, method="L-BFGS-B", jac=True,
            callback=report, options={"maxfun": max_fun, "maxiter": max_iter, "gtol": tol},
        )
    except KeyboardInterrupt:
        x = last["x"]
        fun = last["fun"] if last["fun"] is not None else loss_and_grad(x)[0]
        warnings.warn(
            "Training interrupted by user. The model keeps the parameters of the last completed "
            "L-BFGS iteration (those it started from if none completed); fit again with "
            "warm_start=True to continue."
        )
        return to_device(x.astype(host_dtype(dtype))), iteration["n"], fun
    n_iter = _check_result(result, max_iter)
    return to_device(result.x.astype(host_dtype(dtype))), n_iter, float(result.fun)


def streamed_loss_and_grad(theta, data, arch, alpha: float, rows: int, *, xp):
    """The full-batch objective of host data too big for the device, chunk by chunk.

    Each chunk's data term is weighted by its share of the total sample
    weight; the L2 term is added once. Equals ``loss_and_grad`` on all rows.
    Chunks whose weights are all zero add nothing (their own average is 0/0).
    The data is on the host (``data.batch_to_device`` sends each chunk).
    """
    n = data.n_samples
    total = n if data.sample_weight is None else float(np.sum(data.sample_weight))
    loss = grad = 0.0
    for start in range(0, n, rows):
        chunk = slice(start, min(start + rows, n))
        if data.sample_weight is not None and not np.any(data.sample_weight[chunk]):
            continue
        X, Y, sw = data.rows(chunk, xp=xp)
        share = (X.shape[0] if sw is None else xp.sum(sw)) / total
        chunk_loss, chunk_grad = loss_and_grad(theta, X, Y, sw, arch, 0.0, xp=xp)
        loss, grad = loss + share * chunk_loss, grad + share * chunk_grad
    loss = loss + 0.5 * alpha * squared_norm(theta[: arch.layout.n_coef], xp=xp) / total
    if alpha:
        grad += weight_decay(theta, arch.layout.n_coef, alpha, xp=xp) / total
    return loss, grad


def _check_result(result, max_iter: int) -> int:
    """Warn as scikit-learn does when L-BFGS stopped before converging."""
    n_iter = min(result.nit, max_iter)
    if result.status != 0:
        message = (f"lbfgs failed to converge after {n_iter} iteration(s) "
                   f"(status={result.status}):\n{result.message}\n")
        if n_iter == max_iter:
            message += ("\nIncrease the number of iterations to improve the "
                        f"convergence (max_iter={max_iter}).")
        message += ("\nYou might also want to scale the data as shown in:\n"
                    "    https://scikit-learn.org/stable/modules/preprocessing.html")
        warnings.warn(message, ConvergenceWarning)  # attributed to anymlp, as scikit-learn's to sklearn (DESIGN.md)
    return n_iter
