"""A gradient with its L2 term and its average over samples still to apply.

``loss_and_grad(..., finish=False)`` hands the stochastic optimizers the raw
sum over samples; they finish it, ``(raw + alpha * theta[:n_decayed]) /
sw_sum``, inside their own update where a fused kernel can (one pass over the
parameters less per step on NumPy: the gradient is neither written back nor
read again), and with :meth:`UnscaledGradient.finish` otherwise.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, NamedTuple

from array_api_compat import device

from anymlp._backend import is_tensor
from anymlp.kernels import fused_for, scalar, scalars


class UnscaledGradient(NamedTuple):
    """Made once a training step: a named tuple costs ~0.5 us where a frozen dataclass cost ~1.6."""

    raw: Any  # flat, like theta; finishing may overwrite it
    n_decayed: int  # theta[:n_decayed] carries the L2 term (the weights, not the biases)
    alpha: float
    sw_sum: Any  # number of samples, or the sum of their weights (a 0-d array)
    xp: Any
    # ``split(a) -> (a[:n], a[n:])`` at the weights' end, views kept for the arrays a fit's
    # steps share (theta, this buffer, the optimizer's state), or None: slicing a tensor costs
    # ~2.5 us, and a fused torch Adam step slices four of them.
    split: Any = None

    def finish(self, theta):
        """The gradient itself, given the parameters it was computed at."""
        return finish_gradient(self.raw, theta, self.n_decayed, self.alpha, self.sw_sum, xp=self.xp)

    def fused_scalars(self, theta):
        """``(n_decayed, alpha, sw_sum)`` for a fused update, or None where none may run.

        The kernels take sw_sum as a scalar of theta's dtype; a 0-d array of
        another dtype (float64 weights with float32 data) takes the reference.
        """
        sw_sum = self.sw_sum
        if not (isinstance(sw_sum, int) or sw_sum.dtype == theta.dtype):
            return None
        return ((self.n_decayed if self.alpha else 0), *scalars((self.alpha, sw_sum), theta))


def finish_gradient(grad, theta, n_decayed, alpha, sw_sum, *, xp):
    """Add the L2 gradient ``alpha * W`` (W: ``theta[:n_decayed]``), then divide all by ``sw_sum``.

    In place where the library allows it; returns the result.
    """
    weights = theta[:n_decayed]
    fused = fused_for(grad, weights)
    if fused is not None and (isinstance(sw_sum, int) or sw_sum.dtype == grad.dtype):
        fused.finish_gradient(grad, weights, scalar(alpha, grad), bool(alpha), scalar(sw_sum, grad))
        return grad
    if alpha and n_decayed:
        grad += weight_decay(theta, n_decayed, alpha, xp=xp)
    grad /= sw_sum
    return grad


def weight_decay(theta, n_decayed, alpha, *, xp):
    """The L2 gradient ``alpha * W`` (W: ``theta[:n_decayed]``) as a full-length array, 0 on the biases.

    ``grad[:n] += alpha * W`` ends in a slice assignment of the weights onto
    themselves (one more launch and pass on a GPU), and a view-free library
    needs that assignment. A mask that is alpha on the weights and 0 on the
    biases times theta needs neither, in the same bits: alpha * w on the
    weights, and adding (+-)0 leaves a bias gradient as it was (a column sum,
    never -0.0). But for an infinite or NaN bias, whose 0 * b is NaN: its
    gradient becomes NaN where scikit-learn's stays as it was. Only a diverged
    fit has one, and the fit goes back to its last finite epoch.
    """
    return _decay_mask(theta, n_decayed, float(alpha), xp=xp) * theta


def _decay_mask(theta, n_decayed, alpha, *, xp):
    """``alpha`` on the first ``n_decayed`` entries and 0 after, like theta, made once per fit setting."""
    key = (xp, theta.shape[0], n_decayed, alpha, theta.dtype, device(theta))
    if is_tensor(theta) and sys.modules["torch"].is_inference_mode_enabled():
        return _make_decay_mask(*key)  # an inference tensor, kept, would break a later autograd step
    try:
        return _cached_decay_mask(*key)
    except TypeError:  # a device that cannot be a dict key
        return _make_decay_mask(*key)


def _make_decay_mask(xp, n_params, n_decayed, alpha, dtype, on):
    return xp.concat([xp.full((n_decayed,), alpha, dtype=dtype, device=on),
                      xp.zeros((n_params - n_decayed,), dtype=dtype, device=on)])


_cached_decay_mask = functools.lru_cache(maxsize=4)(_make_decay_mask)
