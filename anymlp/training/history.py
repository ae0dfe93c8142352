"""What the stochastic loop remembers between epochs (and between warm fits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class History:
    """The bookkeeping behind scikit-learn's fitted attributes.

    ``loss_curve``, ``validation_scores``, ``t`` and the best-so-far values
    carry over warm starts and ``partial_fit``; ``n_iter`` counts one fit call.
    ``best_theta`` is the device snapshot restored by early stopping; None
    means "the current weights" (as after a restore, see ``fit_stochastic``).
    """

    early_stopping: bool
    n_iter: int = 0
    t: int = 0
    loss: float | None = None
    loss_curve: list = field(default_factory=list)
    best_loss: float | None = None
    validation_scores: list | None = None
    best_validation_score: float | None = None
    no_improvement_count: int = 0
    best_theta: Any = None
    loss_dtype: np.dtype = np.dtype(np.float64)  # scikit-learn's type for the loss values

    def __post_init__(self):
        if self.early_stopping:
            self.validation_scores = []
            self.best_validation_score = -np.inf
        else:
            self.best_loss = np.inf

    def checkpoint(self) -> tuple:
        """What :meth:`rollback` needs to forget the epochs recorded after this call."""
        return (self.n_iter, self.t, self.loss, len(self.loss_curve), self.best_loss,
                None if self.validation_scores is None else len(self.validation_scores),
                self.best_validation_score, self.no_improvement_count, self.best_theta)

    def rollback(self, mark: tuple) -> None:
        """Back to :meth:`checkpoint`'s state: an epoch cut short leaves no trace."""
        (self.n_iter, self.t, self.loss, n_losses, self.best_loss, n_scores,
         self.best_validation_score, self.no_improvement_count, self.best_theta) = mark
        del self.loss_curve[n_losses:]
        if n_scores is not None:
            del self.validation_scores[n_scores:]

    def record_loss(self, loss: float, n_samples: int) -> None:
        # loss_curve_ and best_loss_ hold these values, and their tol comparison rounds in
        # this dtype, as scikit-learn's does
        loss = self.loss_dtype.type(loss)
        self.n_iter += 1
        self.t += n_samples
        self.loss = loss
        self.loss_curve.append(loss)

    def update_no_improvement(self, tol: float, theta, validation_score, snapshot) -> None:
        """scikit-learn's ``_update_no_improvement_count``: compare with the best by ``tol``."""
        if self.early_stopping:
            score = validation_score
            self.validation_scores.append(score)
            if score < self.best_validation_score + tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            if score > self.best_validation_score:
                self.best_validation_score = score
                self.best_theta = snapshot(theta)
        else:
            last = self.loss_curve[-1]
            if last > self.best_loss - tol:
                self.no_improvement_count += 1
            else:
                self.no_improvement_count = 0
            if last < self.best_loss:
                self.best_loss = last
