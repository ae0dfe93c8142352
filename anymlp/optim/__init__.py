"""Optimizers as (init, update) pairs over one flat array; they know nothing about networks.

``update`` owns ``theta`` and the state: it changes them in place (the array API
allows in-place operators on arrays one owns) and returns them.
"""

from anymlp.optim.adam import AdamState, adam_init, adam_update
from anymlp.optim.schedules import LearningRateSchedule
from anymlp.optim.sgd import SGDState, sgd_init, sgd_update

__all__ = [
    "AdamState",
    "LearningRateSchedule",
    "SGDState",
    "adam_init",
    "adam_update",
    "sgd_init",
    "sgd_update",
]
