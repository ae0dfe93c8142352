"""SGD with (Nesterov) momentum over one flat parameter array.

Same arithmetic, in the same order, as scikit-learn's ``SGDOptimizer``, so
NumPy float64 runs agree with it to the last bit. The optimizer owns theta
and its state, and updates them in place.
"""

from typing import Any, NamedTuple

from anymlp.kernels import flat, fused_for, scalars
from anymlp.optim.gradient import UnscaledGradient


class SGDState(NamedTuple):
    velocity: Any  # like theta


def sgd_init(theta, *, xp) -> SGDState:
    return SGDState(velocity=xp.zeros_like(theta))


def sgd_update(theta, grad, state: SGDState, *, learning_rate, momentum, nesterov):
    """One step, updating ``theta`` and the velocity in place; returns ``(theta, state)``.

    ``grad`` is an array or an :class:`~anymlp.optim.gradient.UnscaledGradient`,
    finished in the same pass where a fused kernel runs.
    """
    velocity = state.velocity
    constants = (*scalars((learning_rate, momentum), theta), bool(nesterov))
    if isinstance(grad, UnscaledGradient):
        fused, finishing = fused_for(theta, grad.raw, velocity), grad.fused_scalars(theta)
        if fused is not None and finishing is not None and hasattr(fused, "sgd_unscaled"):
            fused.sgd_unscaled(flat(theta), flat(grad.raw), flat(velocity), *finishing, *constants)
            return theta, state
        grad = grad.finish(theta)
    fused = fused_for(theta, grad, velocity)
    if fused is not None:
        fused.sgd(flat(theta), flat(grad), flat(velocity), *constants)
        return theta, state
    velocity *= momentum
    velocity -= learning_rate * grad
    if nesterov:
        step = momentum * velocity
        step -= learning_rate * grad
        theta += step
    else:
        theta += velocity
    return theta, SGDState(velocity)
