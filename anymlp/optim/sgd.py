"""SGD with (Nesterov) momentum over one flat parameter array.

Same arithmetic, in the same order, as scikit-learn's ``SGDOptimizer``, so
NumPy float64 runs agree with it to the last bit. The optimizer owns theta
and its state, and updates them in place.
"""

from typing import Any, NamedTuple


class SGDState(NamedTuple):
    velocity: Any  # like theta


def sgd_init(theta, *, xp) -> SGDState:
    return SGDState(velocity=xp.zeros_like(theta))


def sgd_update(theta, grad, state: SGDState, *, learning_rate, momentum, nesterov):
    """One step, updating ``theta`` and the velocity in place; returns ``(theta, state)``."""
    velocity = state.velocity
    velocity *= momentum
    velocity -= learning_rate * grad
    if nesterov:
        step = momentum * velocity
        step -= learning_rate * grad
        theta += step
    else:
        theta += velocity
    return theta, SGDState(velocity)
