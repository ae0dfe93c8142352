"""Warnings and errors of anymlp beyond scikit-learn's own."""

from anymlp._backend import BackendUnavailableError


class DivergenceWarning(UserWarning):
    """Training stopped because the loss or the weights became NaN or infinite."""


class IncompatibleModelError(ValueError):
    """A pickled model was written by an anymlp version this one cannot read."""


__all__ = ["BackendUnavailableError", "DivergenceWarning", "IncompatibleModelError"]
