"""The backward pass against two oracles: finite differences and torch.autograd."""

import array_api_compat.numpy as xnp
import numpy as np
import pytest

from anymlp._backend import to_host
from anymlp.nn import Architecture, Layout, loss_and_grad
from anymlp.nn.losses import CANONICAL_OUTPUT

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
LOSSES = ["squared_error", "poisson", "log_loss", "binary_log_loss"]


def _problem(loss, n_outputs=3, n=7, n_features=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    if loss == "squared_error":
        Y = rng.normal(size=(n, n_outputs))
    elif loss == "poisson":
        Y = rng.poisson(2.0, size=(n, n_outputs)).astype(float)
    elif loss == "log_loss":
        Y = np.eye(n_outputs)[rng.randint(0, n_outputs, n)]
    else:
        Y = (rng.uniform(size=(n, n_outputs)) > 0.5).astype(float)
    return X, Y, rng


def _theta(layout, rng):
    # Nudge ReLU pre-activations away from 0, where the derivative is undefined.
    return rng.uniform(-0.8, 0.8, layout.n_params) + 0.05


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(activation, loss, weighted):
    X, Y, rng = _problem(loss)
    arch = Architecture(Layout((4, 5, 3, Y.shape[1])), activation, loss)
    theta = _theta(arch.layout, rng)
    sw = rng.uniform(0.5, 2.0, X.shape[0]) if weighted else None
    alpha = 0.3

    def f(t):
        return float(loss_and_grad(t, X, Y, sw, arch, alpha, xp=xnp)[0])

    _, grad = loss_and_grad(theta, X, Y, sw, arch, alpha, xp=xnp)
    eps = 1e-6
    numeric = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_torch_autograd(activation, loss):
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt

    X, Y, rng = _problem(loss, n=11)
    arch = Architecture(Layout((4, 6, Y.shape[1])), activation, loss)
    theta = torch.tensor(_theta(arch.layout, rng), requires_grad=True)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    sw = torch.tensor(rng.uniform(0.5, 2.0, X.shape[0]))
    alpha = 0.1

    loss_value, grad = loss_and_grad(theta.detach(), Xt, Yt, sw, arch, alpha, xp=xt)
    autograd_loss, _ = loss_and_grad(theta, Xt, Yt, sw, arch, alpha, xp=xt)
    autograd_loss.backward()
    np.testing.assert_allclose(float(loss_value), float(autograd_loss.detach()))
    np.testing.assert_allclose(grad.numpy(), theta.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_multi_output_squared_error_loss_is_the_function_of_its_gradient():
    """scikit-learn's L-BFGS loss is n_outputs times too small (its #8349); ours is consistent."""
    X, Y, rng = _problem("squared_error", n_outputs=4)
    arch = Architecture(Layout((4, 3, 4)), "tanh", "squared_error")
    theta = _theta(arch.layout, rng)
    loss0, grad = loss_and_grad(theta, X, Y, None, arch, 0.0, xp=xnp)
    direction = rng.normal(size=theta.size)
    eps = 1e-6
    loss1, _ = loss_and_grad(theta + eps * direction, X, Y, None, arch, 0.0, xp=xnp)
    np.testing.assert_allclose((float(loss1) - float(loss0)) / eps, grad @ direction, rtol=1e-4)


def test_every_loss_has_its_canonical_output():
    assert set(CANONICAL_OUTPUT) == set(LOSSES)


@pytest.mark.parametrize("recorded", ["X", "Y", "sample_weight"])
def test_gradient_of_inputs_that_autograd_records(recorded):
    """Differentiating with respect to the data (not theta) works with the fused ops on, and
    gives the loss, the parameter gradient and the data gradient of the portable code."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xt

    import anymlp

    X, Y, rng = _problem("log_loss", n=11)
    arch = Architecture(Layout((4, 6, Y.shape[1])), "relu", "log_loss")
    theta = torch.tensor(_theta(arch.layout, rng))
    data = {"X": X, "Y": Y, "sample_weight": rng.uniform(0.5, 2.0, 11)}
    runs = []
    for kernels in ("auto", "array_api"):
        inputs = {name: torch.tensor(value) for name, value in data.items()}
        inputs[recorded].requires_grad_(True)
        with anymlp.config_context(kernels=kernels):
            loss, grad = loss_and_grad(theta, *inputs.values(), arch, 0.1, xp=xt)
        loss.backward()
        runs.append((float(loss.detach()), grad.detach().numpy(), inputs[recorded].grad.numpy()))
    (loss, grad, data_grad), (ref_loss, ref_grad, ref_data_grad) = runs
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(data_grad, ref_data_grad, rtol=1e-10, atol=1e-12)
    assert np.abs(data_grad).max() > 0


@pytest.mark.parametrize("namespace", ["array_api_strict", "torch"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_portable_loss_agrees_with_numpys(namespace, loss, weighted):
    """On NumPy the losses run SciPy's xlogy and expit (scikit-learn's bits); elsewhere the
    standard's operations stand in for them, and must give the same loss and gradient."""
    xp = pytest.importorskip(namespace)
    from array_api_compat import array_namespace

    X, Y, rng = _problem(loss, n=40)
    Y[:5] = 0.0  # zero targets: xlogy's 0 * log(0) case for Poisson
    arch = Architecture(Layout((4, 6, Y.shape[1])), "logistic", loss)
    theta = _theta(arch.layout, rng) * 4  # saturated outputs reach the log-loss clip
    sw = rng.uniform(0.5, 2.0, X.shape[0]) if weighted else None
    expected_loss, expected_grad = loss_and_grad(theta, X, Y, sw, arch, 0.1, xp=xnp)
    on = (lambda a: xp.asarray(a, device=xp.Device("device1"))) if namespace == "array_api_strict" else xp.asarray
    args = [on(a) if a is not None else None for a in (theta, X, Y, sw)]
    loss_value, grad = loss_and_grad(*args[:4], arch, 0.1, xp=array_namespace(args[0]))
    np.testing.assert_allclose(float(to_host(loss_value)), float(expected_loss), rtol=1e-14)
    np.testing.assert_allclose(to_host(grad), expected_grad, rtol=1e-12, atol=1e-15)
