"""SGD with (Nesterov) momentum over one flat parameter array.

Same arithmetic, in the same order, as scikit-learn's ``SGDOptimizer``, so
NumPy float64 runs agree with it to the last bit. The optimizer owns theta
and its state, and updates them in place.
"""

from typing import Any, NamedTuple

from anymlp.kernels import fused_for, scalar


class SGDState(NamedTuple):
    velocity: Any  # like theta


def sgd_init(theta, *, xp) -> SGDState:
    return SGDState(velocity=xp.zeros_like(theta))


def sgd_update(theta, grad, state: SGDState, *, learning_rate, momentum, nesterov):
    """One step, updating ``theta`` and the velocity in place; returns ``(theta, state)``."""
    velocity = state.velocity
    fused = fused_for(theta, grad, velocity)
    if fused is not None:
        fused.sgd(*(a.reshape(-1) for a in (theta, grad, velocity)),
                  scalar(learning_rate, theta), scalar(momentum, theta), bool(nesterov))
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
