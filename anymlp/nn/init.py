"""Initial weights, drawn on the host exactly as scikit-learn draws them."""

import numpy as np

from anymlp.nn.network import Layout


def glorot_uniform(layout: Layout, activation: str, random_state, dtype) -> np.ndarray:
    """Flat NumPy ``theta`` with Glorot-uniform weights and biases.

    Per layer the weights are drawn first, then the biases, from
    ``random_state`` in float64 (scikit-learn's order, so the same seed gives
    the same network), then cast to ``dtype``.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(layout.units[:-1], layout.units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(random_state.uniform(-bound, bound, (fan_in, fan_out)).ravel())
        intercepts.append(random_state.uniform(-bound, bound, fan_out))
    return np.concatenate(coefs + intercepts).astype(dtype, copy=False)
