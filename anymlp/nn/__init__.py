"""The math: activations, losses, forward and backward passes. Knows no scikit-learn."""

from anymlp.nn.activations import ACTIVATIONS, DERIVATIVES
from anymlp.nn.init import glorot_uniform
from anymlp.nn.losses import LOSSES
from anymlp.nn.network import Architecture, Layout, StepWorkspace, forward, loss_and_grad, unpack

__all__ = [
    "ACTIVATIONS",
    "DERIVATIVES",
    "LOSSES",
    "Architecture",
    "Layout",
    "StepWorkspace",
    "forward",
    "glorot_uniform",
    "loss_and_grad",
    "unpack",
]
