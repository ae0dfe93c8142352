"""SGD with (Nesterov) momentum over one flat parameter array.

Same arithmetic, in the same order, as scikit-learn's ``SGDOptimizer``, so
NumPy float64 runs agree with it to the last bit.
"""

from typing import Any, NamedTuple


class SGDState(NamedTuple):
    velocity: Any  # like theta


def sgd_init(theta, *, xp) -> SGDState:
    return SGDState(velocity=xp.zeros_like(theta))


def sgd_update(theta, grad, state: SGDState, *, learning_rate, momentum, nesterov):
    """One step; returns ``(new_theta, new_state)``. Nothing is modified in place."""
    velocity = momentum * state.velocity - learning_rate * grad
    step = momentum * velocity - learning_rate * grad if nesterov else velocity
    return theta + step, SGDState(velocity)
