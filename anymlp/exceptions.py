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


class DivergenceWarning(UserWarning):
    """Training stopped because the loss or the weights became NaN or infinite."""


class IncompatibleModelError(ValueError):
    """A pickled model was written by an anymlp version this one cannot read."""


__all__ = ["BackendUnavailableError", "DivergenceWarning", "IncompatibleModelError", "NonFiniteTrainingError"]
