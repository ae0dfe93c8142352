"""The fused NumPy loops (anymlp.kernels) against the array-API reference they replace.

Each fused kernel must give bitwise the same arrays as the reference code, on
float32 and float64, including zeros, infinities and NaN, and a fit must give
the same model with the kernels on or off.
"""

import contextlib
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

import anymlp
from anymlp import MLPClassifier, MLPRegressor
from anymlp.kernels import fused_for
from anymlp.nn.activations import relu_derivative
from anymlp.nn.losses import loss_delta_and_column_sums
from anymlp.nn.network import _add_bias_and_activate
from anymlp.optim.gradient import UnscaledGradient, finish_gradient
from anymlp.optim.adam import adam_init, adam_update
from anymlp.optim.sgd import sgd_init, sgd_update

numba = pytest.importorskip("numba")
xp = pytest.importorskip("array_api_compat.numpy")

from anymlp.kernels import _numba  # noqa: E402 - needs numba, checked above
import anymlp.nn.losses as losses  # noqa: E402


def _loss_kernel(dtype):
    """The kernel an unweighted log-loss batch of ``dtype`` runs: the fused loss where it is
    offered (no SVML; float32 only with a SciPy that computes xlogy in float32), else the softmax."""
    offered = hasattr(_numba, "softmax_log_loss") and (
        np.dtype(dtype) == np.float64 or losses.XLOGY_FLOAT32_IN_FLOAT32)
    return "softmax_log_loss" if offered else "softmax"


needs_fused_loss = pytest.mark.skipif(not hasattr(_numba, "softmax_log_loss"),
                                      reason="numba vectorises with SVML: no fused log loss")

DTYPES = ["float32", "float64"]


def _vector(rng, n, dtype, special=True):
    a = rng.standard_normal(n).astype(dtype)
    if special:  # values where a careless loop differs from NumPy's arithmetic
        a[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).tiny]
    return a


def _both(fn, *arrays):
    """``fn`` on fresh copies with the fused kernels on, then off; the arrays after each."""
    results = []
    for kernels in ("numba", "array_api"):
        copies = [a.copy() for a in arrays]
        with anymlp.config_context(kernels=kernels), np.errstate(all="ignore"):
            out = fn(*copies)
        results.append((out, copies))
    return results


def _assert_bitwise(a, b):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(a, b, strict=True)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))  # -0.0 == 0.0 above


@pytest.fixture
def spy(monkeypatch):
    """Count calls into the numba module, to prove the fused path ran."""
    return _record_calls(monkeypatch, ("adam", "sgd", "adam_unscaled", "sgd_unscaled", "finish_gradient",
                                       "zero_where_zero", "add_bias_relu", "softmax", "softmax_log_loss",
                                       "zero_where_zero_column_sums", "tanh_derivative_column_sums",
                                       "logistic_derivative_column_sums"))


def _record_calls(monkeypatch, names) -> list:
    """The names of the numba module's functions ``names`` in the order they are called
    (those it lacks, such as softmax_log_loss under SVML, are skipped)."""
    calls = []
    for name in names:
        original = getattr(_numba, name, None)
        if original is not None:
            monkeypatch.setattr(_numba, name,
                                lambda *a, _f=original, _n=name, **kw: (calls.append(_n), _f(*a, **kw))[1])
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 3])
def test_adam_matches_reference(dtype, steps, spy):
    rng = np.random.default_rng(0)
    theta, grad = _vector(rng, 1000, dtype), _vector(rng, 1000, dtype)

    def run(theta, grad):
        state = adam_init(theta, xp=xp)
        for _ in range(steps):
            theta, state = adam_update(theta, grad, state, learning_rate=1e-3, beta_1=0.9,
                                       beta_2=0.999, epsilon=1e-8, xp=xp)
        return theta, state

    (fused, _), (reference, _) = _both(run, theta, grad)
    assert spy.count("adam") == steps
    for a, b in zip((fused[0], fused[1].m, fused[1].v), (reference[0], reference[1].m, reference[1].v)):
        _assert_bitwise(a, b)
    assert fused[1].t == reference[1].t == steps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_matches_reference(dtype, nesterov, spy):
    rng = np.random.default_rng(1)
    theta, grad = _vector(rng, 1000, dtype), _vector(rng, 1000, dtype)

    def run(theta, grad):
        state = sgd_init(theta, xp=xp)
        for _ in range(3):
            theta, state = sgd_update(theta, grad, state, learning_rate=0.1, momentum=0.9, nesterov=nesterov)
        return theta, state.velocity

    (fused, _), (reference, _) = _both(run, theta, grad)
    assert spy.count("sgd") == 3
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.0, 1e-4])
@pytest.mark.parametrize("weighted", [False, True])
def test_finish_gradient_matches_reference(dtype, alpha, weighted, spy):
    rng = np.random.default_rng(2)
    grad, theta = _vector(rng, 500, dtype), _vector(rng, 500, dtype)
    sw_sum = np.sum(rng.random(37).astype(dtype)) if weighted else 37
    (fused, _), (reference, _) = _both(lambda g, t: finish_gradient(g, t, 400, alpha, sw_sum, xp=xp), grad, theta)
    assert spy.count("finish_gradient") == 1
    _assert_bitwise(fused, reference)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["adam", "sgd-nesterov", "sgd"])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("weighted", [False, True])
def test_updates_finishing_the_gradient_match_finish_then_update(dtype, optimizer, alpha, weighted, spy):
    """An UnscaledGradient finished inside the fused update: the bits of finishing, then updating."""
    rng = np.random.default_rng(4)
    theta, raw = _vector(rng, 700, dtype), _vector(rng, 700, dtype)
    sw_sum = np.sum(rng.random(37).astype(dtype)) if weighted else 37

    def run(theta, raw):
        state = (adam_init if optimizer == "adam" else sgd_init)(theta, xp=xp)
        for _ in range(3):
            grad = UnscaledGradient(raw.copy(), 500, alpha, sw_sum, xp)
            if optimizer == "adam":
                theta, state = adam_update(theta, grad, state, learning_rate=1e-3, beta_1=0.9,
                                           beta_2=0.999, epsilon=1e-8, xp=xp)
            else:
                theta, state = sgd_update(theta, grad, state, learning_rate=0.1, momentum=0.9,
                                          nesterov=optimizer == "sgd-nesterov")
        return (theta, state.m, state.v) if optimizer == "adam" else (theta, state.velocity)

    (fused, _), (reference, _) = _both(run, theta, raw)
    assert spy == [("adam" if optimizer == "adam" else "sgd") + "_unscaled"] * 3
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_derivative_matches_reference(dtype, spy):
    rng = np.random.default_rng(3)
    z = np.maximum(rng.standard_normal((30, 7)).astype(dtype), 0)
    delta = rng.standard_normal((30, 7)).astype(dtype)
    delta.reshape(-1)[np.flatnonzero(z == 0)[:3]] = [np.inf, np.nan, -0.0]  # zeroed by the mask
    delta.reshape(-1)[np.flatnonzero(z > 0)[:2]] = [np.inf, np.nan]  # kept
    (fused, _), (reference, _) = _both(lambda z, d: relu_derivative(z, d, xp=xp), z, delta)
    assert spy.count("zero_where_zero") == 1
    _assert_bitwise(fused, reference)


DELTA_KERNELS = {"relu": "zero_where_zero_column_sums", "tanh": "tanh_derivative_column_sums",
                 "logistic": "logistic_derivative_column_sums"}


def _hidden_output(activation, rng, shape, dtype):
    """A hidden layer's output as the activation makes it, with the values at its ends: ReLU's
    zeros (about half), tanh's -1 and 1, the logistic's 0 and 1, and NaN."""
    z = rng.standard_normal(shape) * rng.choice([0.1, 1.0, 30.0], shape)
    z = {"relu": np.maximum(z, 0), "tanh": np.tanh(z), "logistic": 1 / (1 + np.exp(-z))}[activation].astype(dtype)
    ends = {"relu": [0.0, 0.0, 1.0], "tanh": [-1.0, 1.0, -0.0], "logistic": [0.0, 1.0, 0.5]}[activation]
    z.flat[-4:] = [*ends, np.nan][-z.size:]
    return z


@pytest.mark.parametrize("activation", sorted(DELTA_KERNELS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (200, 100), (257, 512), (300, 8)])
def test_hidden_delta_column_sums_are_numpys(activation, dtype, shape, spy):
    """A hidden layer's derivative with its column sums (the layer's bias gradient) in one
    pass: the delta as the reference, the sums as NumPy's axis-0 sum of it, to the bit."""
    from anymlp.nn.network import _hidden_delta

    rng = np.random.default_rng(10)
    z = _hidden_output(activation, rng, shape, dtype)
    delta = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 1e3], shape)).astype(dtype)
    delta.flat[:5] = [np.inf, -np.inf, -0.0, np.finfo(dtype).tiny, np.nan][:delta.size]
    z.flat[:5] = 0.5
    z[:, -1], delta[:, -1] = 0.5, -0.0  # a column of -0.0 sums to +0.0, as NumPy's sum starts there
    (fused, _), (reference, _) = _both(lambda z, d: _hidden_delta(activation, z, d, xp=xp), z, delta)
    assert spy == [DELTA_KERNELS[activation]] and reference[1] is None
    _assert_bitwise(fused[0], reference[0])
    _assert_bitwise(fused[1], np.sum(reference[0], axis=0))


@pytest.mark.parametrize("activation", sorted(DELTA_KERNELS))
def test_a_one_unit_hidden_layer_sums_on_numpy(activation, spy):
    # NumPy sums one column pairwise, not row after row: that sum stays NumPy's.
    from anymlp.nn.network import _hidden_delta

    z = _hidden_output(activation, np.random.default_rng(11), (300, 1), np.float64)
    with anymlp.config_context(kernels="numba"):
        _, sums = _hidden_delta(activation, z, np.ones((300, 1)), xp=xp)
    assert sums is None and DELTA_KERNELS[activation] not in spy


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_hidden_layers_activate_in_place_as_the_reference(activation, dtype):
    """On NumPy a hidden layer's activation writes over the product it is given, with the
    same ufunc as ACTIVATIONS' (which returns a new array): the same bits."""
    from anymlp.nn.activations import ACTIVATIONS

    rng = np.random.default_rng(12)
    z = (rng.standard_normal((40, 9)) * 20).astype(dtype)
    z.flat[:4] = [np.inf, -np.inf, np.nan, -0.0]
    b = rng.standard_normal(9).astype(dtype)
    expected = ACTIVATIONS[activation](z + b, xp=xp)
    with np.errstate(all="ignore"):
        out = _add_bias_and_activate(z, b, activation, xp=xp)
    assert out is z
    _assert_bitwise(out, expected)


def test_fused_path_needs_contiguous_writable_same_dtype_numpy():
    a = np.zeros(8)
    assert fused_for(a, np.ones(8)) is not None
    assert fused_for(a, np.ones(8, dtype=np.float32)) is None  # mixed dtypes: NumPy would promote
    assert fused_for(a, np.ones(16)[::2]) is None  # strided
    assert fused_for(np.zeros(8, dtype=np.int64)) is None
    readonly = np.zeros(8)
    readonly.flags.writeable = False
    assert fused_for(readonly) is None
    with anymlp.config_context(kernels="array_api"):
        assert fused_for(a) is None


def test_kernels_setting(monkeypatch):
    assert anymlp.get_config()["kernels"] == "auto"
    with pytest.raises(ValueError, match="kernels must be one of"):
        anymlp.set_config(kernels="fast")
    monkeypatch.setenv("ANYMLP_KERNELS", "array_api")
    assert anymlp.get_config()["kernels"] == "array_api"
    assert fused_for(np.zeros(4)) is None
    with anymlp.config_context(kernels="numba"):
        assert fused_for(np.zeros(4)) is not None
    # None resets to the default over the environment, for the kernels and get_config alike.
    with anymlp.config_context(kernels=None):
        assert anymlp.get_config()["kernels"] == "auto"
        assert fused_for(np.zeros(4)) is not None


@pytest.mark.parametrize("library", ["anymlp", "sklearn"])
def test_set_config_inside_a_context_lasts_until_the_context_exits(library):
    """scikit-learn's semantics, checked on scikit-learn itself too."""
    import sklearn

    lib, key, value, other = ((anymlp, "kernels", "numba", "array_api") if library == "anymlp"
                              else (sklearn, "assume_finite", True, False))
    before = lib.get_config()[key]
    with lib.config_context(**{key: other}):
        lib.set_config(**{key: value})
        assert lib.get_config()[key] == value
    assert lib.get_config()[key] == before


def test_get_config_reads_the_environment_and_the_innermost_context(monkeypatch):
    monkeypatch.setenv("ANYMLP_FIT_MEMORY_BUDGET", "1e6")
    monkeypatch.setenv("ANYMLP_DEVICE", "cpu")
    monkeypatch.setenv("ANYMLP_FLUSH_DENORMALS", "yes")
    assert anymlp.get_config() == {"backend": None, "device": "cpu", "fit_memory_budget": 1000000, "kernels": "auto",
                                   "flush_denormals": True}
    with anymlp.config_context(fit_memory_budget=5, device=None):
        with anymlp.config_context(kernels="array_api", flush_denormals=False):
            assert anymlp.get_config() == {"backend": None, "device": None, "fit_memory_budget": 5,
                                           "kernels": "array_api", "flush_denormals": False}


def _fit_both(make_estimator, X, y, **fit_params):
    models = []
    for kernels in ("numba", "array_api"):
        with anymlp.config_context(kernels=kernels), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models.append(make_estimator().fit(X, y, **fit_params))
    return models


ULP_RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_regressor_fit_is_bitwise_the_same_with_kernels_on_or_off(dtype, solver, spy):
    X, y = make_regression(300, 12, n_targets=2, random_state=0)
    X, y = X.astype(dtype), (y / 100).astype(dtype)
    weights = np.random.default_rng(0).random(300)
    fused, reference = _fit_both(
        lambda: MLPRegressor(hidden_layer_sizes=(16, 8), solver=solver, max_iter=5, random_state=0,
                             learning_rate_init=1e-3), X, y, sample_weight=weights)
    assert {solver + "_unscaled", "zero_where_zero_column_sums"} <= set(spy)
    for a, b in zip(fused.coefs_ + fused.intercepts_, reference.coefs_ + reference.intercepts_):
        _assert_bitwise(a, b)
    assert fused.loss_curve_ == reference.loss_curve_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("weighted", [False, True])
def test_classifier_fit_agrees_with_kernels_on_or_off(dtype, solver, weighted, spy):
    X, y = make_classification(300, 12, n_informative=6, n_classes=3, random_state=0)
    X = X.astype(dtype)
    weights = np.random.default_rng(0).random(300) if weighted else None
    fused, reference = _fit_both(
        lambda: MLPClassifier(hidden_layer_sizes=(16, 8), solver=solver, max_iter=5, random_state=0), X, y,
        sample_weight=weights)
    assert ("softmax" if weighted else _loss_kernel(dtype)) in spy and "add_bias_relu" in spy
    for a, b in zip(fused.coefs_ + fused.intercepts_, reference.coefs_ + reference.intercepts_):
        _assert_bitwise(a, b)
    assert fused.loss_curve_ == reference.loss_curve_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_log_loss_matches_reference(dtype, weighted, spy):
    rng = np.random.default_rng(4)
    Z = (rng.standard_normal((40, 5)) * 30).astype(dtype)  # some probabilities get clipped
    Z[0, 2] = np.nan  # a diverged row stays NaN, as in NumPy
    Y = np.eye(5, dtype=dtype)[rng.integers(0, 5, 40)]
    weights = rng.random(40).astype(dtype) if weighted else None
    rest = (Y,) if weights is None else (Y, weights)

    def run(Z, Y, weights=None):
        sw_sum = Z.shape[0] if weights is None else np.sum(weights)
        terms, delta, _ = loss_delta_and_column_sums("log_loss", Z, Y, weights, sw_sum, xp=xp)
        return terms.value(xp=xp), delta

    results = _both(run, Z, *rest)
    (fused_loss, fused_delta), (ref_loss, ref_delta) = (out for out, _ in results)
    # Weighted batches keep the reference loss; only the softmax is fused for them.
    assert spy == (["softmax"] if weighted else [_loss_kernel(dtype)])
    assert np.isnan(fused_delta[0]).all() and np.isnan(ref_delta[0]).all()
    _assert_bitwise(fused_delta, ref_delta)
    assert np.isnan(fused_loss) and np.isnan(ref_loss)
    results = _both(run, Z[1:], *(a[1:] for a in rest))
    (fused_loss, _), (ref_loss, _) = (out for out, _ in results)
    assert fused_loss.dtype == ref_loss.dtype == np.dtype(dtype)
    _assert_bitwise(fused_loss, ref_loss)


@needs_fused_loss
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labels", ["one-hot", "soft"])
def test_fused_log_loss_parts_are_the_references_bits(dtype, labels, spy):
    """Per output, not only their total: the epoch end combines the parts of many batches.

    Logits from tame to wildly confident (clipped at eps and 1 - eps), all-zero
    columns, a NaN row, and labels beyond one-hot (xlogy's general case).
    """
    rng = np.random.default_rng(8)
    Z = (rng.standard_normal((600, 12)) * np.repeat([1.0, 8.0, 80.0], 200)[:, None]).astype(dtype)
    if labels == "one-hot":
        Y = np.eye(12, dtype=dtype)[rng.integers(0, 10, 600)]  # classes 10 and 11 never occur
    else:
        Y = rng.random((600, 12)).astype(dtype) * (rng.random((600, 12)) < 0.5)
    for nan_row in (None, 3):
        if nan_row is not None:
            Z[nan_row, 7] = np.nan
        (fused, _), (reference, _) = _both(
            lambda Z, Y: loss_delta_and_column_sums("log_loss", Z, Y, None, 600, xp=xp), Z, Y)
        _assert_bitwise(fused[0].per_output, reference[0].per_output)
        _assert_bitwise(fused[1], reference[1])
        assert reference[2] is None  # the reference leaves the bias gradient to np.sum
        if _loss_kernel(dtype) == "softmax_log_loss":  # the output layer's bias gradient, on the way
            _assert_bitwise(fused[2], np.sum(reference[1], axis=0))
    assert spy == [_loss_kernel(dtype)] * 2
    assert np.isnan(fused[0].per_output).all()


@needs_fused_loss
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_log_loss_sums_from_positive_zero(dtype, spy):
    # A subnormal label times log(1 - eps) is -0.0; NumPy's axis-0 sum starts from +0.0.
    Z = np.array([[40.0, 0.0]], dtype)
    Y = np.array([[np.finfo(dtype).smallest_subnormal, 0.0]], dtype)
    (fused, _), (reference, _) = _both(lambda Z, Y: loss_delta_and_column_sums("log_loss", Z, Y, None, 1, xp=xp), Z, Y)
    assert spy == [_loss_kernel(dtype)]
    _assert_bitwise(fused[0].per_output, reference[0].per_output)


@needs_fused_loss
def test_fused_log_loss_only_where_it_is_the_references_bits(spy, monkeypatch):
    rng = np.random.default_rng(9)

    def kernel_run(Z, Y, weights=None):
        spy.clear()
        with anymlp.config_context(kernels="numba"), np.errstate(all="ignore"):
            loss_delta_and_column_sums("log_loss", Z.copy(), Y, weights, Z.shape[0], xp=xp)
        return spy[-1] if spy else "reference"

    Z, Y = rng.standard_normal((20, 4)), np.eye(4)[rng.integers(0, 4, 20)]
    assert kernel_run(Z, Y) == "softmax_log_loss"
    assert kernel_run(Z, Y, weights=np.ones(20)) == "softmax"
    # One column: NumPy sums it pairwise over the rows, not row after row.
    assert kernel_run(Z[:, :1].copy(), Y[:, :1].copy()) == "softmax"
    assert kernel_run(Z, Y[:1]) == "softmax"  # a label array of another shape takes the reference
    monkeypatch.setattr(losses, "XLOGY_FLOAT32_IN_FLOAT32", False)  # SciPy < 1.16: xlogy in double
    assert kernel_run(Z.astype(np.float32), Y.astype(np.float32)) == "softmax"
    assert kernel_run(Z, Y) == "softmax_log_loss"


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sums_follow_numpys_pairwise_order(dtype):
    from anymlp.kernels._numba import _pairwise_sum

    rng = np.random.default_rng(6)
    for k in [*range(1, 41), 100, 127, 128]:
        rows = (rng.random((20, k)) * rng.random((20, 1)) * 10).astype(dtype)
        expected = np.sum(rows, axis=1)
        got = np.array([_pairwise_sum(row, 0, k, rows.dtype.type(0)) for row in rows], dtype=dtype)
        _assert_bitwise(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_bias_relu_matches_reference(dtype, spy):
    rng = np.random.default_rng(5)
    z, b = rng.standard_normal((30, 7)).astype(dtype), rng.standard_normal(7).astype(dtype)
    z[0, :3] = [np.nan, -np.inf, np.inf]
    (fused, _), (reference, _) = _both(lambda z, b: _add_bias_and_activate(z, b, "relu", xp=xp), z, b)
    assert spy.count("add_bias_relu") == 1
    _assert_bitwise(fused, reference)


def test_regressor_lbfgs_is_the_same_with_kernels_on_or_off():
    X, y = make_regression(200, 6, random_state=0)
    fused, reference = _fit_both(lambda: MLPRegressor(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=30, random_state=0), X, y)
    for a, b in zip(fused.coefs_, reference.coefs_):
        _assert_bitwise(a, b)


def test_more_than_128_classes_take_the_reference_softmax(spy):
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((20, 130))
    Y = np.eye(130)[rng.integers(0, 130, 20)]
    (fused, _), (reference, _) = _both(lambda Z, Y: loss_delta_and_column_sums("log_loss", Z, Y, None, 20, xp=xp), Z, Y)
    assert not {"softmax", "softmax_log_loss"} & set(spy)
    _assert_bitwise(fused[1], reference[1])


def _printed_by_a_fresh_process(code):
    """What ``code`` prints in a new interpreter (whose imports start from nothing), split."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_kernels_run_from_the_disk_cache_in_a_new_process():
    # Compiled code is cached on disk; loading it is a different path from compiling
    # (a cached recursive kernel once crashed there), so run a fit in two fresh processes.
    code = (
        "import numpy as np, anymlp; from anymlp import MLPClassifier, MLPRegressor\n"
        "anymlp.set_config(kernels='numba')\n"
        "X = np.random.default_rng(0).random((60, 5)); y = np.arange(60) % 3\n"
        "for dtype in ('float32', 'float64'):\n"
        "    for solver in ('adam', 'sgd'):\n"
        "        MLPClassifier((4,), solver=solver, max_iter=2).fit(X.astype(dtype), y)\n"
        "        MLPRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=2).fit(X.astype(dtype), y)\n"
        "print('ok')\n"
    )
    for _ in range(2):
        assert _printed_by_a_fresh_process(code) == ["ok"]


def test_auto_loads_numba_only_for_fits_that_repay_it():
    code = (
        "import sys, numpy as np, anymlp.estimators.base as base; from anymlp import MLPClassifier\n"
        "X = np.random.default_rng(0).random((60, 5)); y = np.arange(60) % 3\n"
        "MLPClassifier((4,), max_iter=3).fit(X, y); print('numba' in sys.modules)\n"
        "base.FUSED_KERNELS_MIN_WORK = 1  # as if the fit were long\n"
        "MLPClassifier((4,), max_iter=3).fit(X, y); print('numba' in sys.modules)\n"
    )
    assert _printed_by_a_fresh_process(code) == ["False", "True"]


def test_a_forward_pass_loads_numba_only_for_a_fused_step():
    """tanh layers have no numba kernel, so a forward pass through them must not load it."""
    code = (
        "import sys, numpy as np; from anymlp.nn import Architecture, Layout, forward\n"
        "import array_api_compat.numpy as xp\n"
        "arch = Architecture(Layout((5, 4, 3)), 'tanh', 'log_loss')\n"
        "forward(np.zeros(arch.layout.n_params), np.ones((2, 5)), arch, xp=xp, keep=False)\n"
        "print('numba' in sys.modules)\n"
    )
    assert _printed_by_a_fresh_process(code) == ["False"]


def test_predicting_numpy_with_a_model_fit_elsewhere_does_not_load_numba():
    """The predict runs on NumPy, so NumPy's rule decides, not the fit's namespace."""
    pytest.importorskip("array_api_strict")
    code = (
        "import sys, numpy as np, array_api_strict as xps; from anymlp import MLPClassifier\n"
        "X = np.random.default_rng(0).random((60, 5)); y = np.arange(60) % 3\n"
        "clf = MLPClassifier((4,), max_iter=3).fit(xps.asarray(X), xps.asarray(y))\n"
        "P = clf.predict_proba(X); print(type(P).__module__, 'numba' in sys.modules)\n"
    )
    assert _printed_by_a_fresh_process(code) == ["numpy", "False"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiclass_lbfgs_is_bitwise_the_same_with_kernels_on_or_off(dtype, spy):
    # L-BFGS's line search reads the loss: a last-bit difference there moved the weights.
    X, y = make_classification(300, 12, n_informative=6, n_classes=3, random_state=0)
    fused, reference = _fit_both(
        lambda: MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=50, random_state=0),
        X.astype(dtype), y)
    assert _loss_kernel(dtype) in spy
    for a, b in zip(fused.coefs_ + fused.intercepts_, reference.coefs_ + reference.intercepts_):
        _assert_bitwise(a, b)
    assert fused.loss_ == reference.loss_


# ------------------------------------------------- float64 Adam: division by the weight sum

@numba.njit(cache=False)
def _quotients(numerators, divisor, low, high):
    reciprocal = numerators.dtype.type(1) / divisor
    out = np.empty_like(numerators)
    left = np.empty(numerators.shape, np.bool_)
    for i in range(numerators.shape[0]):
        out[i], left[i] = _numba._quotient(numerators[i], divisor, reciprocal, low, high)
    return out, left


@numba.njit(cache=False)
def _wrong_quotients_in_a_binade(divisor):
    """How many float32 numerators in [1, 2) ``_quotient`` divides by ``divisor`` otherwise than ``/``."""
    reciprocal = np.float32(1) / divisor
    low, high = np.float32(0.5), np.float32(4)
    wrong = 0
    for bits in range(0x3F800000, 0x40000000):
        a = np.uint32(bits).view(np.float32)
        q, left = _numba._quotient(a, divisor, reciprocal, low, high)
        wrong += left or q != a / divisor
    return wrong


def test_quotient_is_division_for_every_float32_numerator_of_a_binade():
    """The multiply-add division against ``/`` exhaustively in float32, where every case fits a test.

    Scaling a numerator or a divisor by a power of two scales the reciprocal and every
    step exactly (far from overflow and subnormals, which the range excludes), so a
    binade of numerators covers all numerators for a divisor, and divisors in [1, 2)
    stand for all. float64 rests on the same argument at 53 bits, and on the random
    float64s of the next test.
    """
    one_ulp = np.float32(2.0**-23)
    divisors = [1.0, 1 + one_ulp, 2 - one_ulp, 2 - 2 * one_ulp, 1.5, 200 / 128, 60000 / 32768, 37 / 32, 5 / 4,
                7 / 4, 1.2345678, 1.9999, 1 + 3 * one_ulp]
    divisors += list(np.random.default_rng(20).uniform(1, 2, 7))
    wrong = {float(d): _wrong_quotients_in_a_binade(np.float32(d)) for d in divisors}
    assert wrong == {d: 0 for d in wrong}


def test_quotient_is_division_for_random_float64s():
    rng = np.random.default_rng(21)
    n = 400_000
    numerators = np.ldexp(rng.uniform(1, 2, n) * rng.choice([-1, 1], n), rng.integers(-890, 890, n))
    divisors = [200.0, 256.0, 37.0, 60000.0, 3.0, 0.3, 1 / 3, np.nextafter(2.0, 0), 2.0**59, 2.0**-59,
                float(np.sum(rng.random(200)))] + list(np.ldexp(rng.uniform(1, 2, 5), rng.integers(-50, 50, 5)))
    low, high = _numba.EXACT_RANGE
    for divisor in divisors:
        quotients, left = _quotients(numerators, divisor, low, high)
        assert not left.any()
        _assert_bitwise(quotients, numerators / divisor)


def test_quotient_leaves_what_it_cannot_divide_exactly():
    """Outside the range the multiply-adds are not proven: those quotients are left for a
    division. A zero is divided exactly, its sign kept."""
    low, high = _numba.EXACT_RANGE
    inside = np.array([0.0, -0.0, low, -low, high, -high, 1.0])
    outside = np.array([np.nan, np.inf, -np.inf, np.nextafter(low, 0), 5e-324, -2.2e-308,
                        np.nextafter(high, np.inf), -1e300])
    quotients, left = _quotients(np.concatenate([inside, outside]), 200.0, low, high)
    assert not left[: inside.size].any() and left[inside.size:].all()
    _assert_bitwise(quotients[: inside.size], inside / 200.0)


def _adam_steps(theta, raw, sw_sum, steps, flush):
    """``steps`` fused-or-reference Adam steps on the unscaled gradient ``raw``; the arrays
    and each step's ``divide`` hint."""
    from anymlp.kernels import denormals_flushed

    state, hints = adam_init(theta, xp=xp), []
    with anymlp.config_context(flush_denormals=flush), (denormals_flushed() if flush else contextlib.nullcontext()):
        for _ in range(steps):
            grad = UnscaledGradient(raw.copy(), 600, 1e-4, np.float64(sw_sum), xp)
            theta, state = adam_update(theta, grad, state, learning_rate=1e-3, beta_1=0.9,
                                       beta_2=0.999, epsilon=1e-8, xp=xp)
            hints.append(state.divide)
    return (theta, state.m, state.v), hints


@pytest.fixture
def adam_paths(monkeypatch):
    """The float64 fused Adam kernels each step ran, in order."""
    if not _numba._FMA:
        pytest.skip("no hardware fused multiply-add here: the kernel divides")
    monkeypatch.setattr(_numba, "RECIPROCAL_MIN_SIZE", 0)  # the tests' small arrays take it too
    return _record_calls(monkeypatch, ("_adam_unscaled_by_reciprocal", "_adam_unscaled_dividing"))


# beta_1, 1 - beta_1, beta_2, 1 - beta_2, -step_size, epsilon, as the kernels take them
ADAM_CONSTANTS = tuple(np.float64(x) for x in (0.9, 0.1, 0.999, 0.001, -1e-3, 1e-8))


def _skip_without_flush(flush):
    if flush and not _numba.FLUSH_SUPPORTED:
        pytest.skip("flushing subnormals needs an x86-64 CPU")


@pytest.mark.parametrize("sw_sum", [200.0, 37.25, 2.0**-61, 2.0**61, 7e300])
@pytest.mark.parametrize("flush", [False, True])
def test_float64_adam_divides_through_the_reciprocal_where_it_may(sw_sum, flush, adam_paths):
    """Moderate weight sums take the multiply-add division, others a division: both bitwise
    the reference's steps, also under flush_denormals."""
    _skip_without_flush(flush)
    rng = np.random.default_rng(22)
    theta, raw = _vector(rng, 900, "float64", special=False), _vector(rng, 900, "float64", special=False) * 50
    raw[:2] = [0.0, -0.0]
    ((fused, hints), _), ((reference, _), _) = _both(lambda t, r: _adam_steps(t, r, sw_sum, 3, flush), theta, raw)
    moderate = 2.0**-60 <= sw_sum <= 2.0**60
    assert adam_paths == ["_adam_unscaled_by_reciprocal" if moderate else "_adam_unscaled_dividing"] * 3
    assert hints == [False] * 3
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


@pytest.mark.parametrize("flush", [False, True])
def test_float64_adam_divides_what_the_multiply_adds_leave_and_then_everything(flush, adam_paths):
    """Parameters outside the range (subnormal, huge, NaN, inf) are divided after the first
    pass, to the reference's bits; from then on the optimizer divides from the start."""
    _skip_without_flush(flush)
    rng = np.random.default_rng(23)
    theta, raw = _vector(rng, 900, "float64"), _vector(rng, 900, "float64") * 50
    raw[6:12] = [5e-324, -1e-310, 3e-280, 1e280, -2.0**-901, 2.0**901]
    theta[12:15] = [1e-305, 5e-324, 1e303]
    ((fused, hints), _), ((reference, _), _) = _both(lambda t, r: _adam_steps(t, r, 200.0, 3, flush), theta, raw)
    assert adam_paths == ["_adam_unscaled_by_reciprocal"] + ["_adam_unscaled_dividing"] * 2
    assert hints == [True] * 3
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


def test_a_weight_leaving_the_range_in_its_own_step_is_stepped_once(adam_paths):
    """A weight whose numerator is in range before its step and out of it after, in a step
    that leaves another quotient: it must not be stepped again with the left ones."""
    arrays = np.zeros(2), np.array([3.004447895367743e-271, 5e-324]), np.zeros(2), np.zeros(2)
    fused, reference = [a.copy() for a in arrays], [a.copy() for a in arrays]
    assert _numba.adam_unscaled(*fused, 1, np.float64(1e-4), np.float64(1.0), *ADAM_CONSTANTS) is True
    _numba._adam_unscaled_dividing(*reference, 1, np.float64(1e-4), np.float64(1.0), *ADAM_CONSTANTS)
    assert adam_paths[0] == "_adam_unscaled_by_reciprocal"
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


@pytest.mark.parametrize("sw_sum", [200, np.int64(200), np.float32(37.25), np.array(37.25)])
def test_float64_adam_kernel_takes_any_real_weight_sum(sw_sum, adam_paths):
    """The kernel as a function: a weight sum of another type is taken as float64, as NumPy
    takes a Python or NumPy scalar beside a float64 array."""
    rng = np.random.default_rng(24)
    arrays = rng.standard_normal(50), rng.standard_normal(50), np.zeros(50), np.zeros(50)
    fused, reference = [a.copy() for a in arrays], [a.copy() for a in arrays]
    _numba.adam_unscaled(*fused, 40, np.float64(1e-4), sw_sum, *ADAM_CONSTANTS)
    _numba._adam_unscaled_dividing(*reference, 40, np.float64(1e-4), np.float64(sw_sum), *ADAM_CONSTANTS)
    assert adam_paths[0] == "_adam_unscaled_by_reciprocal"
    for a, b in zip(fused, reference):
        _assert_bitwise(a, b)


def test_a_long_float64_fit_crossing_the_division_range_is_scikit_learns(adam_paths):
    """Weights of an always-zero feature (MNIST's border pixels) decay under Adam until their
    quotients leave the multiply-add range: the fit goes on dividing, to scikit-learn's bits.
    (They start near the range's end here, rather than after ~12000 steps.) The step that
    crosses is guarded by test_a_weight_leaving_the_range_in_its_own_step_is_stepped_once."""
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    X[:, 0] = 0.0
    y = (X[:, 1] > 0).astype(int)
    params = dict(hidden_layer_sizes=(3,), solver="adam", max_iter=1, tol=0.0, n_iter_no_change=10**9,
                  random_state=0, warm_start=True)
    with anymlp.config_context(kernels="numba"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference, fitted = SklearnMLP(**params).fit(X, y), MLPClassifier(**params).fit(X, y)
        for model in (reference, fitted):
            model.coefs_[0][0] = [1e-262, -3e-263, 5e-264]
            model.set_params(max_iter=400).fit(X, y)
    assert fitted._optimizer.state.divide
    crossing = adam_paths.index("_adam_unscaled_dividing")  # the multiply-adds until the crossing, then dividing
    assert 1 < crossing and set(adam_paths[:crossing]) == {"_adam_unscaled_by_reciprocal"}
    assert set(adam_paths[crossing:]) == {"_adam_unscaled_dividing"}
    assert np.all(np.abs(fitted.coefs_[0][0]) < 2.0**-900 / 1e-4)
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, reference.coefs_ + reference.intercepts_):
        _assert_bitwise(a, b)


def test_the_divide_hint_is_not_pickled():
    """A state pickles as (t, m, v), as before the hint: a model saved now loads in a version
    without it (simulated by that version's class), and the hint only chooses a kernel."""
    import collections
    import pickle

    import anymlp.optim.adam as adam

    state = adam.AdamState(3, np.zeros(2), np.ones(2), True)
    loaded = pickle.loads(pickle.dumps(state))
    assert loaded.t == 3 and not loaded.divide
    np.testing.assert_array_equal(loaded.v, state.v)
    without_hint = collections.namedtuple("AdamState", "t m v")
    without_hint.__module__, without_hint.__qualname__ = adam.__name__, "AdamState"
    blob = pickle.dumps(state)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adam, "AdamState", without_hint)
        assert pickle.loads(blob)._fields == ("t", "m", "v")


def test_a_small_float64_adam_step_divides(monkeypatch):
    """Below RECIPROCAL_MIN_SIZE parameters the division is the faster kernel."""
    paths = _record_calls(monkeypatch, ("_adam_unscaled_by_reciprocal", "_adam_unscaled_dividing"))
    for n in (_numba.RECIPROCAL_MIN_SIZE - 1, _numba.RECIPROCAL_MIN_SIZE):
        arrays = np.ones(n), np.ones(n), np.zeros(n), np.zeros(n)
        _numba.adam_unscaled(*arrays, n // 2, np.float64(1e-4), np.float64(200.0), *ADAM_CONSTANTS)
    expected = ["_adam_unscaled_dividing"] + (["_adam_unscaled_by_reciprocal"] if _numba._FMA else ["_adam_unscaled_dividing"])
    assert paths == expected


# --------------------------------------------------------------------- the lean NumPy step


def _step_parts(theta, X, Y, sample_weight, arch, alpha, lean):
    """One stochastic step's loss terms and raw gradient (copied), and whether the lean step ran."""
    from anymlp.nn import network

    workspace = network.StepWorkspace(arch.layout)
    with anymlp.config_context(kernels="numba"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(network, "LEAN_STEPS", lean)
        loss, grad = network.loss_and_grad(theta, X, Y, sample_weight, arch, alpha, xp=xp, finish=False,
                                           workspace=workspace)
    ran = workspace._lean is not None and workspace._lean[2] is not None
    return loss, grad, grad.raw.copy(), ran


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [(5,), (7, 3), (4, 6, 5), (1,), (6, 1, 4)])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("rows", [17, 1])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error", "binary_log_loss", "poisson"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_lean_numpy_step_is_the_general_step_to_the_bit(dtype, hidden, alpha, rows, loss, activation):
    _assert_lean_step_is_the_general_step(dtype, hidden, alpha, rows, loss, activation, weighted=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error", "binary_log_loss", "poisson"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_weighted_lean_numpy_step_is_the_general_step_to_the_bit(dtype, alpha, loss, activation):
    """With sample weights: the loss's weighted sums, the delta scaled by the weights and the
    weight sum (a 0-d array) for the penalty and the gradient, as the general code takes them."""
    _assert_lean_step_is_the_general_step(dtype, (7, 3), alpha, 17, loss, activation, weighted=True)


def _assert_lean_step_is_the_general_step(dtype, hidden, alpha, rows, loss, activation, weighted):
    from anymlp.nn.network import Architecture, Layout

    rng = np.random.default_rng(len(hidden) + rows)
    from tests.conftest import targets_for_loss

    Y = targets_for_loss(loss, rng, rows, dtype)
    layout = Layout((6, *hidden, Y.shape[1]))
    arch = Architecture(layout, activation, loss)
    theta = (rng.standard_normal(layout.n_params) * 0.8).astype(dtype)
    X = (rng.standard_normal((rows, 6)) * 2).astype(dtype)
    X[0, 1] = -0.0
    weights = None
    if weighted:
        weights = rng.uniform(0, 3, rows).astype(dtype)
        weights[0] = 0.0
    lean_loss, lean_grad, lean_raw, lean_ran = _step_parts(theta, X, Y, weights, arch, alpha, lean=True)
    loss, grad, raw, ran = _step_parts(theta, X, Y, weights, arch, alpha, lean=False)
    assert lean_ran and not ran
    _assert_bitwise(lean_raw, raw)
    _assert_bitwise(lean_loss.per_output, loss.per_output)
    assert len(lean_loss.penalties) == len(loss.penalties) == (len(hidden) + 1 if alpha else 0)
    for a, b in zip(lean_loss.penalties, loss.penalties):
        _assert_bitwise(a, b)
    assert (lean_loss.scale, lean_loss.alpha) == (loss.scale, loss.alpha)
    _assert_bitwise(lean_loss.sw_sum, loss.sw_sum)
    assert (lean_grad.n_decayed, lean_grad.alpha, lean_grad.xp) == (grad.n_decayed, grad.alpha, grad.xp)
    _assert_bitwise(lean_grad.sw_sum, grad.sw_sum)
    assert lean_grad.split is not None and grad.split is not None
    _assert_bitwise(lean_loss.value(xp=xp), loss.value(xp=xp))


@pytest.mark.parametrize("case", ["float64 X", "F-ordered Y", "fewer label rows", "array_api"])
def test_lean_numpy_step_leaves_what_it_does_not_cover_to_the_general_step(case):
    from anymlp.nn.network import Architecture, Layout

    rng = np.random.default_rng(0)
    layout = Layout((4, 5, 3))
    arch = Architecture(layout, "relu", "log_loss")
    theta = rng.standard_normal(layout.n_params).astype(np.float32)
    X = rng.standard_normal((9, 4)).astype(np.float64 if case == "float64 X" else np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 9)]
    if case == "F-ordered Y":
        Y = np.asfortranarray(Y)
    if case == "fewer label rows":  # the general code's error, not the kernel reading past Y
        from anymlp.nn import network

        with anymlp.config_context(kernels="numba"), pytest.raises(ValueError, match="broadcast"):
            network.loss_and_grad(theta, X, Y[:5], None, arch, 1e-4, xp=xp, finish=False,
                                  workspace=network.StepWorkspace(layout))
        return
    if case == "array_api":
        from anymlp.nn import network

        workspace = network.StepWorkspace(layout)
        with anymlp.config_context(kernels="array_api"):
            assert workspace.lean_step(theta, X, Y, None, arch, xp=xp) is None
        with anymlp.config_context(kernels="numba"):
            assert workspace.lean_step(theta, X, Y, None, arch, xp=xp) is not None  # the same workspace, again
        return
    _, _, _, ran = _step_parts(theta, X, Y, None, arch, 1e-4, lean=True)
    assert not ran


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_fit_is_the_same_with_the_lean_step_or_without(solver, task, activation, weighted, monkeypatch):
    from anymlp.nn import network

    if task == "regression":
        X, y = make_regression(400, 10, n_targets=2, random_state=1)
        y, make = y / 100, MLPRegressor
    else:
        X, y = make_classification(400, 10, n_informative=6, n_classes=4 if task == "multiclass" else 2,
                                   random_state=1)
        make = MLPClassifier
    models, steps = [], []
    original = network._LeanNumpyStep.__call__
    monkeypatch.setattr(network._LeanNumpyStep, "__call__",
                        lambda self, *a: (steps.append(1), original(self, *a))[1])
    for lean in (True, False):
        monkeypatch.setattr(network, "LEAN_STEPS", lean)
        with anymlp.config_context(kernels="numba"):
            models.append(make(hidden_layer_sizes=(12, 7), activation=activation, solver=solver, batch_size=64,
                               max_iter=4, tol=0, n_iter_no_change=99, random_state=0).fit(
                X, y, sample_weight=np.random.default_rng(2).uniform(0.1, 2, len(y)) if weighted else None))
    assert len(steps) == 4 * 7  # 4 epochs of 7 batches (the last one short), all lean in the first fit
    for a, b in zip(models[0].coefs_ + models[0].intercepts_, models[1].coefs_ + models[1].intercepts_):
        _assert_bitwise(a, b)
    assert models[0].loss_curve_ == models[1].loss_curve_
