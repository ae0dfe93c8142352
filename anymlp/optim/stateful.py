"""Optimizer objects for the training loop: state + schedule around the pure updates.

They keep scikit-learn's private surface (``learning_rate``, ``iteration_ends``,
``trigger_stopping``) so code that peeks at ``estimator._optimizer`` still works.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from anymlp.optim.adam import adam_init, adam_step_size, adam_update
from anymlp.optim.schedules import LearningRateSchedule
from anymlp.optim.sgd import SGDState, sgd_init, sgd_update


class _StateCheckpoints:
    """Copy and restore the optimizer's arrays, with theta, at the end of a good epoch; and
    show them per layer as scikit-learn's optimizers hold them.

    ``param_shapes`` (set by the estimator) are the shapes of ``coefs_ + intercepts_``: the
    flat arrays hold those parameters one after the other, so consecutive views of these
    shapes are scikit-learn's lists (``ms``, ``vs``, ``velocities``), which code written for
    its optimizers reads. Views: they follow the training.
    """

    param_shapes: tuple | None = None

    def _per_parameter(self, flat) -> list:
        if self.param_shapes is None:
            raise AttributeError("this optimizer was made without the parameters' shapes")
        xp, views, start = array_namespace(flat), [], 0
        for shape in self.param_shapes:
            size = math.prod(shape)
            views.append(xp.reshape(flat[start:start + size], shape))
            start += size
        return views

    def snapshot(self, copy):
        return type(self.state)(*(copy(a) if hasattr(a, "shape") else a for a in self.state))

    def restore(self, state) -> None:
        self.state = state


class SGDOptimizer(_StateCheckpoints):
    def __init__(self, theta, *, xp, learning_rate_init, lr_schedule="constant",
                 momentum=0.9, nesterov=True, power_t=0.5):
        self.schedule = LearningRateSchedule(lr_schedule, learning_rate_init, power_t)
        self.momentum = momentum
        self.nesterov = nesterov
        self.state = sgd_init(theta, xp=xp)

    @property
    def learning_rate(self) -> float:
        return self.schedule.learning_rate

    def step(self, theta, grad):
        theta, self.state = sgd_update(
            theta, grad, self.state, learning_rate=self.schedule.learning_rate,
            momentum=self.momentum, nesterov=self.nesterov,
        )
        return theta

    @property
    def velocities(self) -> list:
        return self._per_parameter(self.state.velocity)

    def snapshot(self, copy):
        """The arrays and the schedule's rate (invscaling and adaptive change it at epoch ends)."""
        return super().snapshot(copy), self.schedule.learning_rate

    def restore(self, state) -> None:
        arrays, self.schedule.learning_rate = state
        super().restore(arrays)

    def iteration_ends(self, samples_seen: int) -> None:
        self.schedule.iteration_ends(samples_seen)

    def trigger_stopping(self, message: str, verbose) -> bool:
        return self.schedule.trigger_stopping(message, verbose)

    def map_arrays(self, fn) -> None:
        """Apply ``fn`` to every state array (moving it to another device, say)."""
        self.state = SGDState(*(fn(a) for a in self.state))


class AdamOptimizer(_StateCheckpoints):
    def __init__(self, theta, *, xp, learning_rate_init, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.learning_rate_init = float(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.state = adam_init(theta, xp=xp)
        self._xp = xp

    @property
    def t(self) -> int:
        return self.state.t

    @property
    def ms(self) -> list:
        return self._per_parameter(self.state.m)

    @property
    def vs(self) -> list:
        return self._per_parameter(self.state.v)

    @property
    def learning_rate(self) -> float:
        t = max(self.state.t, 1)
        return adam_step_size(self.learning_rate_init, t, self.beta_1, self.beta_2)

    def step(self, theta, grad):
        theta, self.state = adam_update(
            theta, grad, self.state, learning_rate=self.learning_rate_init,
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, xp=self._xp,
        )
        return theta

    def iteration_ends(self, samples_seen: int) -> None:
        pass

    def trigger_stopping(self, message: str, verbose) -> bool:
        if verbose:
            print(message + " Stopping.")
        return True

    def map_arrays(self, fn) -> None:
        self.state = self.state._replace(m=fn(self.state.m), v=fn(self.state.v))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_xp"] = None  # namespaces are modules: re-derived after loading
        return state

    def set_namespace(self, xp) -> None:
        self._xp = xp
