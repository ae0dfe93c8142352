"""Training loops: minibatch SGD/Adam, the L-BFGS bridge, early stopping, callbacks."""

from anymlp.training.callbacks import Callback, EpochRecord
from anymlp.training.early_stopping import split_validation
from anymlp.training.history import History
from anymlp.training.lbfgs import fit_lbfgs
from anymlp.training.stochastic import LoopSettings, TrainingData, fit_stochastic

__all__ = [
    "Callback",
    "EpochRecord",
    "History",
    "LoopSettings",
    "TrainingData",
    "fit_lbfgs",
    "fit_stochastic",
    "split_validation",
]
