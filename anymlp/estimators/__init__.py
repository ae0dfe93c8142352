"""The scikit-learn estimators."""

from anymlp.estimators.classifier import MLPClassifier
from anymlp.estimators.regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
