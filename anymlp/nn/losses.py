"""Losses, averaged over samples and summed over outputs, kept as parts until read.

Every loss here pairs with its canonical output activation, so the gradient
with respect to the output layer's pre-activation is ``P - Y`` for all of them
(see :func:`anymlp.nn.network.loss_and_grad`).

A batch's loss is a :class:`LossTerms`: the device sums over samples of the
per-element values (one per output) and of the squared weights, with the
scalars that turn them into the loss by scikit-learn's operations. The
stochastic loop keeps each batch's parts and combines them on the host once
per epoch: combining them on the device took five 0-d operations per step,
each a kernel launch on a GPU. The per-element values are scikit-learn's too
(SciPy's ``xlogy`` on NumPy), so on NumPy the loss has scikit-learn's bits.

Squared error is *summed* over outputs, not averaged as in scikit-learn 1.9.1:
scikit-learn's gradient belongs to the sum (its issue #8349), so with the mean
its L-BFGS saw a loss and a gradient of two different functions. For one
output the two agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from anymlp._backend import XLOGY_FLOAT32_IN_FLOAT32, clip, xlogy
from anymlp.kernels import fused_for
from anymlp.nn.activations import ACTIVATIONS


class LossTerms(NamedTuple):
    """A batch's regularised loss, its parts not yet combined.

    ``per_output`` holds the (weighted) sums over samples of the per-element
    values, one per output; ``penalties`` the squared norms of the weights
    (per layer, or one for all), 0-d arrays; ``sw_sum`` is the number of
    samples, or the sum of their weights as a 0-d array. The same works for
    a group of batches on the host, with one more axis at the end of each
    array: ``per_output`` (n_outputs, n_batches), the others (n_batches,).

    Made twice a training step: a named tuple costs ~0.4 us where a frozen
    dataclass cost ~1.7.
    """

    per_output: Any
    scale: float
    sw_sum: Any
    penalties: tuple = ()
    alpha: float = 0.0

    def value(self, *, xp):
        """The loss, a 0-d array of the parts' namespace, by scikit-learn's operations.

        Those are ``scale * np.average(values, axis=0).sum()`` (column sums
        over ``sw_sum``, then their sum) and ``(0.5 * alpha) * penalty / sw_sum``
        with the layers' dot products added in order; on NumPy the bits are
        scikit-learn's, which L-BFGS's line search needs, as it magnifies a
        last-bit difference over many iterations.
        """
        loss = self.scale * xp.sum(self.per_output / self.sw_sum, axis=0)
        if not self.penalties:
            return loss
        penalty = self.penalties[0]
        for layer in self.penalties[1:]:
            penalty = penalty + layer
        return loss + (0.5 * self.alpha) * penalty / self.sw_sum


def _per_output_sums(values, sample_weight, *, xp):
    """Sums over samples (weighted), one per output: one reduction over (n, n_outputs)."""
    if sample_weight is None:
        return xp.sum(values, axis=0)
    return xp.sum(values * sample_weight[:, None], axis=0)


def squared_error(Y, P, *, xp):
    return (Y - P) ** 2


def poisson(Y, P, *, xp):
    safe_p = xp.where(Y == 0, 1.0, P)  # not 0 / 0 where Y == 0 and P underflowed
    return xlogy(Y, Y / safe_p, xp=xp) - Y + P


def _clip_probabilities(P, *, xp):
    eps = xp.finfo(P.dtype).eps
    return clip(P, eps, 1 - eps, xp=xp)


def log_loss(Y, P, *, xp):
    """Categorical cross-entropy for softmax outputs (Y one-hot), before the sign."""
    return xlogy(Y, _clip_probabilities(P, xp=xp), xp=xp, y_positive=True)


def binary_log_loss(Y, P, *, xp):
    """Independent logistic losses (binary and multilabel), before the sign."""
    P = _clip_probabilities(P, xp=xp)
    return xlogy(Y, P, xp=xp, y_positive=True) + xlogy(1 - Y, 1 - P, xp=xp, y_positive=True)


# name -> (per-element values, the factor on their mean over samples)
LOSSES = {
    "squared_error": (squared_error, 0.5),
    "poisson": (poisson, 1.0),
    "log_loss": (log_loss, -1.0),
    "binary_log_loss": (binary_log_loss, -1.0),
}


# The output activation that makes ``P - Y`` the exact output-layer gradient.
CANONICAL_OUTPUT = {
    "squared_error": "identity",
    "poisson": "exp",
    "log_loss": "softmax",
    "binary_log_loss": "logistic",
}


def loss_delta_and_column_sums(loss, Z, Y, sample_weight, sw_sum, *, xp):
    """The loss as :class:`LossTerms` (no L2 term), the output layer's delta ``(P - Y) *
    sample_weight``, and ``sum(delta, axis=0)`` (its bias gradient) where a kernel takes it
    in the same pass, else None.

    ``Z`` is the output layer's pre-activation, and may be overwritten;
    ``P`` is its canonical output activation.
    """
    fused = _fused_log_loss(loss, Z, Y, sample_weight)
    if fused is not None:  # softmax, loss and delta together (NumPy: one pass after the exp)
        per_output, delta, delta_sums = fused.softmax_log_loss(Z, Y)
        return LossTerms(per_output, LOSSES[loss][1], sw_sum), delta, delta_sums
    P = _output_activation(loss, Z, xp=xp)
    values, scale = LOSSES[loss]
    value = LossTerms(_per_output_sums(values(Y, P, xp=xp), sample_weight, xp=xp), scale, sw_sum)
    delta = P - Y
    if sample_weight is not None:
        delta = delta * sample_weight[:, None]
    return value, delta, None


def _fused_log_loss(loss, Z, Y, sample_weight):
    """The kernels whose ``softmax_log_loss`` replaces the reference for this batch, or None:
    no sample weights, labels of Z's shape, and :func:`fused_log_loss_applies`."""
    if loss != "log_loss" or sample_weight is not None or Y.shape != Z.shape:
        return None
    fused = fused_for(Z, Y)
    return fused if fused_log_loss_applies(fused, loss, Z.shape[1], Z.dtype) else None


def fused_log_loss_applies(kernels, loss, n_outputs, dtype) -> bool:
    """Does ``kernels.softmax_log_loss`` replace the reference for ``n_outputs`` outputs?

    The log loss, two outputs or more. On NumPy (numba) only where every value
    is the reference's to the bit (L-BFGS's line search and ``tol``-based
    stopping read the loss, and they move on a last-bit difference): up to 128
    outputs (NumPy sums a single column pairwise, not row after row); float32
    only with a SciPy whose xlogy computes in float32. On torch, agreeing to a
    few units in the last place, as every torch kernel does.
    """
    if kernels is None or loss != "log_loss" or n_outputs < 2 or not hasattr(kernels, "softmax_log_loss"):
        return False
    if n_outputs > kernels.MAX_SOFTMAX_COLUMNS:
        return False
    # (a torch dtype is never np.float32: torch's xlogy is its own)
    return not (dtype == np.float32 and not XLOGY_FLOAT32_IN_FLOAT32)


def _output_activation(loss, Z, *, xp):
    """``P`` from ``Z``: softmax fused (in place on NumPy, bitwise equal; torch's own), else the reference."""
    if loss == "log_loss":
        fused = fused_for(Z)
        if fused is not None and Z.shape[1] <= fused.MAX_SOFTMAX_COLUMNS:
            return fused.softmax(Z)
    return ACTIVATIONS[CANONICAL_OUTPUT[loss]](Z, xp=xp)
