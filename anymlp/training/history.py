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

    def __post_init__(self):
        if self.early_stopping:
            self.validation_scores = []
            self.best_validation_score = -np.inf
        else:
            self.best_loss = np.inf

    def record_loss(self, loss: float, n_samples: int) -> None:
        loss = np.float64(loss)  # scikit-learn's type for loss_, loss_curve_ and best_loss_
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
