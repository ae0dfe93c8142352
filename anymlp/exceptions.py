"""Warnings and errors of anymlp beyond scikit-learn's own, and how anymlp warns."""

import os
import sys
import warnings

from anymlp._backend import BackendUnavailableError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type = UserWarning) -> None:
    """``warnings.warn``, attributed to the first caller outside anymlp.

    What Python 3.12's ``skip_file_prefixes`` does: the warning shows the
    user's ``fit(...)`` line instead of a line inside anymlp, and ``-W`` or
    ``filterwarnings`` entries for the user's module apply to it.
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


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
