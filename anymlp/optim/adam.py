"""Adam over one flat parameter array, as scikit-learn computes it.

The bias correction is folded into the learning rate and ``epsilon`` is added
outside it (``lr_t * m / (sqrt(v) + eps)``), which is not what torch.optim.Adam
does; it matters only when ``v`` is tiny.
"""

import math
from typing import Any, NamedTuple

from anymlp.kernels import flat, fused_for, scalars
from anymlp.optim.gradient import UnscaledGradient


class AdamState(NamedTuple):
    t: int  # steps taken, kept on the host
    m: Any  # first moment, like theta
    v: Any  # second moment, like theta
    # A fused float64 step met quotients outside its multiply-add division's range (the
    # decaying weights of a long fit): later steps divide from the start. Speed only: the
    # bits are the same either way (kernels/_numba.py, "division by the weight sum").
    divide: bool = False

    def __reduce__(self):
        # Pickled as (t, m, v), as before the hint: a model saved now loads in a version
        # without it, and dropping the hint costs one second pass at most.
        return AdamState, (self.t, self.m, self.v)


def adam_init(theta, *, xp) -> AdamState:
    return AdamState(t=0, m=xp.zeros_like(theta), v=xp.zeros_like(theta))


def adam_step_size(learning_rate, t, beta_1, beta_2) -> float:
    """The bias-corrected step size of step ``t`` (a host float: no device work)."""
    return learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)


def adam_update(theta, grad, state: AdamState, *, learning_rate, beta_1, beta_2, epsilon, xp):
    """One step, updating ``theta`` and the moments in place; returns ``(theta, state)``.

    In place because the optimizer owns these arrays and a step over a large
    network should not allocate a copy of it per operation. The arithmetic is
    scikit-learn's, operation for operation. ``grad`` is an array or an
    :class:`~anymlp.optim.gradient.UnscaledGradient`, finished in the same
    pass where a fused kernel runs.
    """
    m, v = state.m, state.v
    t = state.t + 1
    step_size = adam_step_size(learning_rate, t, beta_1, beta_2)
    constants = (beta_1, 1 - beta_1, beta_2, 1 - beta_2, -step_size, epsilon)
    if isinstance(grad, UnscaledGradient):
        fused, finishing = fused_for(theta, grad.raw, m, v), grad.fused_scalars(theta)
        if fused is not None and finishing is not None and hasattr(fused, "adam_unscaled"):
            arrays = flat(theta), flat(grad.raw), flat(m), flat(v)
            divide = state.divide
            if grad.split is not None and finishing[0] == grad.n_decayed and hasattr(fused, "adam_unscaled_split"):
                fused.adam_unscaled_split(grad.split, *arrays, *finishing, *scalars(constants, theta))
            else:
                divide |= bool(fused.adam_unscaled(*arrays, *finishing, *scalars(constants, theta),
                                                   divide=divide))
            return theta, AdamState(t, m, v, divide)
        grad = grad.finish(theta)
    fused = fused_for(theta, grad, m, v)
    if fused is not None:
        fused.adam(flat(theta), flat(grad), flat(m), flat(v), *scalars(constants, theta))
        return theta, AdamState(t, m, v, state.divide)
    m *= beta_1
    m += (1 - beta_1) * grad
    v *= beta_2
    v += (1 - beta_2) * (grad * grad)
    denom = xp.sqrt(v)
    denom += epsilon
    step = -step_size * m
    step /= denom
    theta += step
    return theta, AdamState(t, m, v, state.divide)
