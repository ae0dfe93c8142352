"""anymlp: scikit-learn's MLPClassifier and MLPRegressor on any array API namespace.

>>> from anymlp import MLPClassifier  # instead of sklearn.neural_network
"""

__version__ = "0.1.0"

from anymlp._backend import BackendUnavailableError, config_context, get_config, set_config  # noqa: E402
from anymlp.estimators import MLPClassifier, MLPRegressor  # noqa: E402
from anymlp.exceptions import DivergenceWarning, IncompatibleModelError  # noqa: E402
from anymlp.training.callbacks import Callback, EpochRecord  # noqa: E402

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

_SUBMODULES = ("cli", "datasets", "plotting", "progress", "testing")


def __getattr__(name):
    """``anymlp.datasets.load_mnist()`` after a bare ``import anymlp``; the helpers load on first use
    (matplotlib stays unloaded until a plot is asked for)."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"anymlp.{name}")
    raise AttributeError(f"module 'anymlp' has no attribute {name!r}")
