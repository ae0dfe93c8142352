"""Per-epoch hooks for the stochastic solvers (and per-iteration for L-BFGS).

A callback is any object with some of the methods of :class:`Callback`; missing
methods are skipped. Callbacks run on the host and receive plain Python numbers,
so none of them can force a device synchronisation inside the batch loop:
``on_batch_end`` is told only *where* the loop is, never a loss value.
"""

from __future__ import annotations

from typing import Any, TypedDict


class EpochRecord(TypedDict):
    """What the host knows at the end of one epoch (one L-BFGS iteration).

    ``validation_score`` is None without early stopping.
    """

    epoch: int
    loss: float
    validation_score: float | None
    seconds: float
    samples_per_second: float


class Callback:
    """Base class documenting the hooks; subclassing it is optional.

    A hook that raises stops the fit, and its exception propagates: ``sgd``/``adam``
    leave the model of the last completed epoch (the best one with early stopping),
    L-BFGS the model from before the fit (a new fit's initial weights, no ``loss_``).
    A KeyboardInterrupt raised in ``on_epoch_begin``, ``on_batch_end`` or
    ``on_epoch_end`` is Ctrl-C: the last completed epoch (L-BFGS: iteration) is kept,
    with a warning. From ``on_fit_begin`` or ``on_fit_end`` it propagates like any
    error (before any epoch, or after the fit kept what it keeps).
    """

    def on_fit_begin(self, estimator: Any, *, max_epochs: int, n_batches: int) -> None:
        """Called once before the first epoch. ``n_batches`` is per epoch (1 for L-BFGS)."""

    def on_epoch_begin(self, estimator: Any, *, epoch: int) -> None:
        """Called before each epoch; ``epoch`` counts from 1 within this fit."""

    def on_batch_end(self, estimator: Any, *, batch: int, n_batches: int) -> None:
        """Called after each batch update, without any value read from the device."""

    def on_epoch_end(self, estimator: Any, record: EpochRecord) -> None:
        """Called after each epoch's bookkeeping (scikit-learn's too: the invscaling rate,
        adaptive's division by 5, the stopping rule); the estimator's ``n_iter_``, ``t_``,
        ``loss_curve_``, optimizer state (and, for L-BFGS, its weights) are that epoch's,
        so a model pickled here resumes as ``fit(max_iter=epoch)`` would. Not with early
        stopping: the pickle holds this epoch's weights, while a fit ending here would end
        on the best epoch's."""

    def on_fit_end(self, estimator: Any) -> None:
        """Called once when fitting stops, also after an interruption or an error, with the
        estimator holding what the fit keeps (the best weights with early stopping)."""


HOOKS = ("on_fit_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_fit_end")


def check_callbacks(callbacks) -> None:
    """Refuse what cannot be a callback: an object with none of the hooks would be skipped
    without a word, and a class would fail inside the loop on its first hook."""
    for i, callback in enumerate(callbacks or ()):
        if isinstance(callback, type):
            raise TypeError(f"callbacks[{i}] is the class {callback.__name__}; pass an instance of it.")
        if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise TypeError(
                f"callbacks[{i}] = {callback!r} has none of the callback methods ({', '.join(HOOKS)}); "
                "see anymlp.Callback."
            )


def notify(callbacks, hook: str, *args, **kwargs) -> None:
    """Call ``hook`` on every callback that defines it."""
    for callback in callbacks or ():
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args, **kwargs)
