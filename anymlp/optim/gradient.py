"""A gradient with its L2 term and its average over samples still to apply.

``loss_and_grad(..., finish=False)`` hands the stochastic optimizers the raw
sum over samples; they finish it, ``(raw + alpha * theta[:n_decayed]) /
sw_sum``, inside their own update where a fused kernel can (one pass over the
parameters less per step on NumPy: the gradient is neither written back nor
read again), and with :meth:`UnscaledGradient.finish` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anymlp.kernels import fused_for, scalar


@dataclass(frozen=True, slots=True)
class UnscaledGradient:
    raw: Any  # flat, like theta; finishing may overwrite it
    n_decayed: int  # theta[:n_decayed] carries the L2 term (the weights, not the biases)
    alpha: float
    sw_sum: Any  # number of samples, or the sum of their weights (a 0-d array)
    xp: Any

    def finish(self, theta):
        """The gradient itself, given the parameters it was computed at."""
        return finish_gradient(self.raw, theta[: self.n_decayed], self.alpha, self.sw_sum, xp=self.xp)

    def fused_scalars(self, theta):
        """``(n_decayed, alpha, sw_sum)`` for a fused update, or None where none may run.

        The kernels take sw_sum as a scalar of theta's dtype; a 0-d array of
        another dtype (float64 weights with float32 data) takes the reference.
        """
        sw_sum = self.sw_sum
        if not (isinstance(sw_sum, int) or sw_sum.dtype == theta.dtype):
            return None
        return (self.n_decayed if self.alpha else 0), scalar(self.alpha, theta), scalar(sw_sum, theta)


def finish_gradient(grad, weights, alpha, sw_sum, *, xp):
    """Add the L2 gradient ``alpha * W`` to the weights' part, then divide all by ``sw_sum``.

    In place; ``weights`` is the first part of theta.
    """
    fused = fused_for(grad, weights)
    if fused is not None and (isinstance(sw_sum, int) or sw_sum.dtype == grad.dtype):
        fused.finish_gradient(grad, weights, scalar(alpha, grad), bool(alpha), scalar(sw_sum, grad))
        return grad
    if alpha:
        # Item assignment, not an add into a slice: correct whether slices are views or copies.
        grad[: weights.shape[0]] += alpha * weights
    grad /= sw_sum
    return grad
