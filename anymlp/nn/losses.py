"""Losses as 0-d device arrays, averaged over samples and summed over outputs.

Every loss here pairs with its canonical output activation, so the gradient
with respect to the output layer's pre-activation is ``P - Y`` for all of them
(see :func:`anymlp.nn.network.loss_and_grad`).

Squared error is *summed* over outputs, not averaged as in scikit-learn 1.9.1:
scikit-learn's gradient belongs to the sum (its issue #8349), so with the mean
its L-BFGS saw a loss and a gradient of two different functions. For one
output the two agree.
"""

from anymlp._backend import clip
from anymlp.kernels import fused_for
from anymlp.nn.activations import ACTIVATIONS


def _mean_over_samples(values, sample_weight, sw_sum, scale, *, xp):
    """``scale`` times the (weighted) mean over samples, summed over outputs: a 0-d array.

    One reduction over the whole (n, n_outputs) array, so two array operations
    without weights: on a GPU each one is a kernel launch.
    """
    if sample_weight is None:
        return xp.sum(values) * (scale / values.shape[0])
    return xp.sum(values * sample_weight[:, None]) * scale / sw_sum


def _xlogy(y, ratio, *, xp):
    """``y * log(ratio)`` with 0 where ``y == 0``, without evaluating log(0)."""
    safe = xp.where(y == 0, 1.0, ratio)
    return xp.where(y == 0, 0.0, y * xp.log(safe))


def squared_error(Y, P, sample_weight, sw_sum, *, xp):
    return _mean_over_samples((Y - P) ** 2, sample_weight, sw_sum, 0.5, xp=xp)


def poisson(Y, P, sample_weight, sw_sum, *, xp):
    safe_p = xp.where(Y == 0, 1.0, P)
    deviance = _xlogy(Y, Y / safe_p, xp=xp) - Y + P
    return _mean_over_samples(deviance, sample_weight, sw_sum, 1.0, xp=xp)


def _clip_probabilities(P, *, xp):
    eps = xp.finfo(P.dtype).eps
    return clip(P, eps, 1 - eps, xp=xp)


def log_loss(Y, P, sample_weight, sw_sum, *, xp):
    """Categorical cross-entropy for softmax outputs (Y one-hot)."""
    P = _clip_probabilities(P, xp=xp)
    return _mean_over_samples(Y * xp.log(P), sample_weight, sw_sum, -1.0, xp=xp)


def binary_log_loss(Y, P, sample_weight, sw_sum, *, xp):
    """Sum over outputs of independent logistic losses (binary and multilabel)."""
    P = _clip_probabilities(P, xp=xp)
    values = Y * xp.log(P) + (1 - Y) * xp.log(1 - P)
    return _mean_over_samples(values, sample_weight, sw_sum, -1.0, xp=xp)


LOSSES = {
    "squared_error": squared_error,
    "poisson": poisson,
    "log_loss": log_loss,
    "binary_log_loss": binary_log_loss,
}

# The output activation that makes ``P - Y`` the exact output-layer gradient.
CANONICAL_OUTPUT = {
    "squared_error": "identity",
    "poisson": "exp",
    "log_loss": "softmax",
    "binary_log_loss": "logistic",
}


def loss_and_output_delta(loss, Z, Y, sample_weight, sw_sum, *, xp):
    """The loss (0-d) and the output layer's delta ``(P - Y) * sample_weight``.

    ``Z`` is the output layer's pre-activation, and may be overwritten;
    ``P`` is its canonical output activation.
    """
    P = _output_activation(loss, Z, xp=xp)
    value = LOSSES[loss](Y, P, sample_weight, sw_sum, xp=xp)
    delta = P - Y
    if sample_weight is not None:
        delta = delta * sample_weight[:, None]
    return value, delta


def _output_activation(loss, Z, *, xp):
    """``P`` from ``Z``: softmax fused (in place on NumPy, bitwise equal; torch's own), else the reference.

    Only the softmax is fused: a loss computed inside the kernel (numba's log,
    other sums) differed in the last bit, which moved L-BFGS's line search and
    ``tol``-based stopping.
    """
    if loss == "log_loss":
        fused = fused_for(Z)
        if fused is not None and Z.shape[1] <= fused.MAX_SOFTMAX_COLUMNS:
            return fused.softmax(Z)
    return ACTIVATIONS[CANONICAL_OUTPUT[loss]](Z, xp=xp)
