"""Warnings and errors of anymlp beyond scikit-learn's own, and how anymlp warns."""

import warnings

from anymlp._backend import BackendUnavailableError


def warn(message: str, category: type = UserWarning) -> None:
    """``warnings.warn`` attributed to the anymlp module that warns, the one place that decides.

    As scikit-learn's warnings are attributed to sklearn's modules, so that
    ``filterwarnings(..., module="anymlp")`` (or ``-W ...:anymlp``) silences
    anymlp's on every path: a direct ``fit``, a Pipeline, a grid search.
    Attributing them to the first frame outside anymlp (Python 3.12's
    ``skip_file_prefixes``) was tried and dropped: that frame is the user's
    line for a direct fit but scikit-learn's inside a Pipeline or
    cross-validation, so module filters acted differently by path.
    """
    warnings.warn(message, category, stacklevel=2)  # the line in anymlp that called warn


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


__all__ = ["BackendUnavailableError", "DivergenceWarning", "IncompatibleModelError", "NonFiniteTrainingError", "warn"]
