"""The held-out split of early stopping, drawn as scikit-learn draws it."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def split_validation(n_samples: int, fraction: float, random_state, stratify=None):
    """Host index arrays ``(train, validation)``.

    Splitting ``arange(n)`` with scikit-learn's ``train_test_split`` and the
    estimator's ``RandomState`` consumes the same draws as splitting the data
    itself, so the same rows are held out as in scikit-learn.
    """
    train, validation = train_test_split(
        np.arange(n_samples, dtype=np.int64), random_state=random_state, test_size=fraction, stratify=stratify
    )
    if validation.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    return train, validation
