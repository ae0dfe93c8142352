"""anymlp: scikit-learn's MLPClassifier and MLPRegressor on any array API namespace.

>>> from anymlp import MLPClassifier  # instead of sklearn.neural_network
"""

import importlib

__version__ = "0.1.0"

from anymlp._backend import BackendUnavailableError, config_context, get_config, set_config  # noqa: E402
from anymlp.exceptions import DivergenceWarning, IncompatibleModelError  # noqa: E402

__all__ = [
    "BackendUnavailableError",
    "Callback",
    "DivergenceWarning",
    "EpochRecord",
    "IncompatibleModelError",
    "MLPClassifier",
    "MLPRegressor",
    "__version__",
    "config_context",
    "get_config",
    "set_config",
]

# Loaded on first use. The estimators bring in scikit-learn (1-2 s): `import anymlp` stays
# quick, and `python -m anymlp` is already running its own code, which turns Ctrl-C into one
# line, while scikit-learn loads.
_LAZY = {"MLPClassifier": "anymlp.estimators", "MLPRegressor": "anymlp.estimators",
         "Callback": "anymlp.training.callbacks", "EpochRecord": "anymlp.training.callbacks"}
_SUBMODULES = ("cli", "datasets", "estimators", "kernels", "nn", "optim", "plotting", "progress", "testing",
               "training")


def __getattr__(name):
    """``anymlp.MLPClassifier``, ``anymlp.datasets.load_mnist()``, ... after a bare ``import anymlp``."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"anymlp.{name}")
    raise AttributeError(f"module 'anymlp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
