"""Warnings and errors of anymlp beyond scikit-learn's own."""

from anymlp._backend import BackendUnavailableError


# scikit-learn's text, which users search for.
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may"
    " contain large values and need to be preprocessed."
)


class NonFiniteTrainingError(ValueError):
    """Training produced no finite model (scikit-learn raises a plain ValueError here)."""

    def __init__(self, message=NON_FINITE_MESSAGE):
        super().__init__(message)


class ZeroWeightBatchError(NonFiniteTrainingError, ZeroDivisionError):
    """A minibatch's sample weights summed to zero, so its loss and gradient are 0/0.

    Also a ZeroDivisionError, which scikit-learn raises there ("Weights sum to
    zero, can't be normalized").
    """

    def __init__(self, epoch: int):
        super().__init__(
            f"The sample weights of a minibatch summed to zero in epoch {epoch}, so its loss and "
            "gradient are undefined (0/0). Drop the zero-weight samples, or use a larger batch_size. "
            "A warm fit or partial_fit keeps the parameters of the last complete epoch (the best ones "
            "with early stopping); a new fit leaves the estimator unfitted."
        )


class DivergenceWarning(UserWarning):
    """Training stopped because the loss or the weights became NaN or infinite."""


class IncompatibleModelError(ValueError):
    """A pickled model was written by an anymlp version this one cannot read."""


__all__ = ["BackendUnavailableError", "DivergenceWarning", "IncompatibleModelError", "NonFiniteTrainingError",
           "ZeroWeightBatchError"]
