"""One code path, every namespace: results live where the input lived, and agree with NumPy."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning

import anymlp
from anymlp import MLPClassifier, MLPRegressor
from anymlp._backend import BackendUnavailableError, to_host


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=150, n_features=6, n_targets=2, noise=0.1, random_state=0)
    return X, y / 100.0


def _fit_quietly(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, **kw)


SOLVERS = [
    dict(solver="adam", max_iter=4),
    dict(solver="sgd", max_iter=4, learning_rate_init=0.05),
    dict(solver="lbfgs", max_iter=8),
    dict(solver="adam", max_iter=6, early_stopping=True, validation_fraction=0.2),
]


@pytest.mark.parametrize("params", SOLVERS, ids=lambda p: p["solver"] + ("-es" if p.get("early_stopping") else ""))
def test_classifier_matches_numpy_and_stays_in_namespace(backend, digits, params):
    X, y = digits
    reference = _fit_quietly(MLPClassifier((16,), random_state=0, **params), X.astype(backend.dtype_name or "float64"), y)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    clf = _fit_quietly(MLPClassifier((16,), random_state=0, **params), Xb, yb)

    proba = clf.predict_proba(Xb)
    labels = clf.predict(Xb)
    assert backend.is_own(proba) and backend.is_own(labels)
    assert all(backend.is_own(c) for c in clf.coefs_ + clf.intercepts_)
    assert isinstance(clf.classes_, np.ndarray)
    assert str(proba.dtype).endswith(backend.dtype_name or "float64")
    tol = 2e-4 if backend.dtype_name == "float32" else 1e-9
    np.testing.assert_allclose(backend.numpy(proba), reference.predict_proba(X.astype(proba_dtype(backend))), atol=tol)
    np.testing.assert_array_equal(backend.numpy(labels), reference.predict(X.astype(proba_dtype(backend))))
    assert isinstance(clf.score(Xb, yb), float)


def proba_dtype(backend):
    return backend.dtype_name or "float64"


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_regressor_matches_numpy(backend, regression, solver):
    X, y = regression
    dtype = proba_dtype(backend)
    reference = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), solver=solver, max_iter=10, random_state=1), X.astype(dtype), y.astype(dtype))
    reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), solver=solver, max_iter=10, random_state=1), backend.asarray(X), backend.asarray(y))
    pred = reg.predict(backend.asarray(X))
    assert backend.is_own(pred) and pred.shape == (150, 2)
    tol = 2e-3 if backend.dtype_name == "float32" else 1e-9
    np.testing.assert_allclose(backend.numpy(pred), reference.predict(X.astype(dtype)), atol=tol, rtol=tol)



@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_the_loss_dtype_follows_the_targets_on_every_namespace(backend, regression, solver):
    """scikit-learn's rule (float32 model and float32 y: float32 losses) read from any library's dtypes."""
    X, y = regression
    params = dict(hidden_layer_sizes=(4,), solver=solver, max_iter=2, random_state=1)
    for y_dtype, expected in (("float32", np.float32), ("float64", np.float64)):
        if y_dtype == "float64" and backend.dtype_name == "float32":
            continue  # (the backend makes every float array float32)
        reg = _fit_quietly(MLPRegressor(**params), backend.asarray(X.astype(np.float32)),
                           backend.asarray(y.astype(y_dtype)))
        assert type(reg.loss_) is expected, y_dtype

def test_multilabel_and_string_labels_on_device(device_backend):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 5))
    Y = (rng.uniform(size=(80, 3)) > 0.5).astype(np.int64)
    clf = _fit_quietly(MLPClassifier((7,), max_iter=5, random_state=0), device_backend.asarray(X), device_backend.asarray(Y))
    pred = clf.predict(device_backend.asarray(X))
    assert device_backend.is_own(pred) and pred.shape == (80, 3)

    words = np.array(["cat", "dog", "emu"])[rng.randint(0, 3, 80)]
    clf = _fit_quietly(MLPClassifier((7,), max_iter=5, random_state=0), device_backend.asarray(X), words)
    # Strings cannot live on a device: they come back as NumPy, like classes_.
    assert clf.predict(device_backend.asarray(X)).dtype.kind == "U"
    assert clf.predict_proba(device_backend.asarray(X)).shape == (80, 3)


def test_backend_parameter_moves_numpy_input_and_answers_in_numpy(digits):
    pytest.importorskip("torch")
    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0, backend="torch"), X, y)
    assert clf._backend.name == "torch"
    assert isinstance(clf.predict_proba(X), np.ndarray)
    assert isinstance(clf.coefs_[0], np.ndarray)
    reference = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0), X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-10)


def test_strict_backend_by_name_and_device_string(digits):
    pytest.importorskip("array_api_strict")
    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0, backend="array_api_strict", device="device1"), X, y)
    assert clf._backend.name == "array_api_strict" and "device1" in repr(clf._backend.device)
    assert isinstance(clf.predict(X), np.ndarray)


def test_global_config_and_precedence(digits, monkeypatch):
    pytest.importorskip("torch")
    X, y = digits
    with anymlp.config_context(backend="torch"):
        assert _fit_quietly(MLPClassifier((5,), max_iter=2), X, y)._backend.name == "torch"
        # The estimator's own parameter wins over the global setting.
        assert _fit_quietly(MLPClassifier((5,), max_iter=2, backend="numpy"), X, y)._backend.name == "numpy"
    assert _fit_quietly(MLPClassifier((5,), max_iter=2), X, y)._backend.name == "numpy"
    monkeypatch.setenv("ANYMLP_BACKEND", "torch")
    assert _fit_quietly(MLPClassifier((5,), max_iter=2), X, y)._backend.name == "torch"
    anymlp.set_config(backend="numpy")
    try:
        assert _fit_quietly(MLPClassifier((5,), max_iter=2), X, y)._backend.name == "numpy"
    finally:
        anymlp.set_config(backend=None)


def test_config_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        anymlp.set_config(backend="jax")


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(backend="numpy", device="cuda:0"), "NumPy only computes on 'cpu'"),
        (dict(backend="torch", device="cuda:1"), "CUDA device"),
    ],
)
def test_missing_device_fails_at_once_with_a_plain_message(digits, params, match):
    pytest.importorskip("torch")
    X, y = digits
    with pytest.raises(BackendUnavailableError, match=match):
        MLPClassifier(max_iter=1, **params).fit(X, y)


def test_cuda_without_an_index_means_the_current_device(monkeypatch):
    """Pinned when resolved: a model fit on "cuda" and an input moved to "cuda" after
    ``torch.cuda.set_device(1)`` must not end up on two different GPUs."""
    torch = pytest.importorskip("torch")
    from anymlp._backend import _torch_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert _torch_device("cuda") == torch.device("cuda", 1)
    assert _torch_device("cuda:0") == torch.device("cuda", 0)
    assert _torch_device("cpu") == torch.device("cpu")


def test_cupy_without_gpu_says_what_to_do(digits, monkeypatch):
    import importlib.util

    X, y = digits
    if importlib.util.find_spec("cupy") is None:
        message = "pip install 'anymlp\\[cuda12\\]'"
    else:
        import cupy

        if cupy.is_available():
            pytest.skip("a GPU is present")
        message = "no CUDA device is usable"
    with pytest.raises(BackendUnavailableError, match=message):
        MLPClassifier(max_iter=1, backend="cupy").fit(X, y)


def test_device_targets_beside_host_X_come_to_the_host(digits):
    """A Pipeline's scaler hands on NumPy X while y (and sample_weight) stay tensors: X decides
    where training runs, and the fit is the one on NumPy targets, as scikit-learn takes them."""
    torch = pytest.importorskip("torch")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = digits
    w = np.linspace(0.5, 1.5, len(y))
    params = dict(hidden_layer_sizes=(10,), max_iter=3, random_state=0)
    on_host = _fit_quietly(make_pipeline(StandardScaler(), MLPClassifier(**params)), X, y,
                           mlpclassifier__sample_weight=w)
    mixed = _fit_quietly(make_pipeline(StandardScaler(), MLPClassifier(**params)), torch.asarray(X),
                         torch.asarray(y), mlpclassifier__sample_weight=torch.asarray(w))
    np.testing.assert_array_equal(mixed[-1].coefs_[0], on_host[-1].coefs_[0])
    assert isinstance(mixed.predict(torch.asarray(X)), np.ndarray)  # the scaler's NumPy X decides
    reg = _fit_quietly(MLPRegressor(**params), X, torch.asarray(y, dtype=torch.float64))
    np.testing.assert_array_equal(reg.coefs_[0], _fit_quietly(MLPRegressor(**params), X, y.astype(float)).coefs_[0])
    one_weight = _fit_quietly(MLPClassifier(**params), X, y, sample_weight=torch.tensor(2.0))  # a 0-d tensor
    np.testing.assert_array_equal(one_weight.coefs_[0],
                                  _fit_quietly(MLPClassifier(**params), X, y, sample_weight=2.0).coefs_[0])


def test_sparse_multilabel_y_beside_device_X():
    """scikit-learn takes a sparse indicator matrix as y; beside tensor X it is a host y."""
    torch = pytest.importorskip("torch")
    import scipy.sparse as sp
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(80, 5, n_classes=3, random_state=0)
    params = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    on_host = _fit_quietly(MLPClassifier(**params), X, sp.csr_matrix(Y))
    on_torch = _fit_quietly(MLPClassifier(**params), torch.asarray(X), sp.csr_matrix(Y))
    np.testing.assert_allclose(on_torch.coefs_[0].numpy(), on_host.coefs_[0], rtol=1e-12)
    assert tuple(on_torch.predict(torch.asarray(X)).shape) == (80, 3)


def test_targets_of_another_library_or_device_move_to_X():
    """Everything follows X, as in scikit-learn's array-API estimators (its
    check_array_api_mixed_inputs): y and sample_weight from another library or device are
    moved to X's, and the fit is the one on X's own."""
    torch = pytest.importorskip("torch")
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.RandomState(0)
    X, y, w = rng.normal(size=(50, 4)), rng.randint(0, 3, 50), rng.uniform(0.5, 1.5, 50)
    params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    device1 = xps.Device("device1")
    cases = [
        (torch.asarray(X), (torch.asarray(y), torch.asarray(w)), (xps.asarray(y, device=device1),
                                                                   xps.asarray(w, device=device1))),
        (xps.asarray(X, device=device1), (xps.asarray(y, device=device1), xps.asarray(w, device=device1)),
         (xps.asarray(y), xps.asarray(w))),
    ]
    for X_, own, other in cases:
        expected = _fit_quietly(MLPClassifier(**params), X_, own[0], sample_weight=own[1])
        mixed = _fit_quietly(MLPClassifier(**params), X_, other[0], sample_weight=other[1])
        assert type(mixed.classes_) is np.ndarray and mixed._backend.device == expected._backend.device
        np.testing.assert_array_equal(to_host(mixed.coefs_[0]), to_host(expected.coefs_[0]))


def test_predict_on_another_namespace_converts_the_model(digits, monkeypatch):
    torch = pytest.importorskip("torch")
    import anymlp.estimators.base as base

    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0), torch.asarray(X), torch.asarray(y))
    # On a CPU the host copy of a torch model shares its memory; copy it, as from a GPU.
    real = base.to_device
    monkeypatch.setattr(base, "to_device", lambda a, *args, **kw: np.array(r) if isinstance(
        r := real(a, *args, **kw), np.ndarray) else r)
    np.testing.assert_allclose(clf.predict_proba(X), clf.predict_proba(torch.asarray(X)).numpy(), atol=1e-12)
    clf.intercepts_[1][:] = 0  # in place through torch views: the cached copy must follow
    clf.coefs_[1][:] = 0
    np.testing.assert_allclose(clf.predict_proba(X), 0.1)


def test_a_predict_while_a_warm_fit_moves_the_model_to_another_library(digits):
    """A warm fit on torch sets the model's backend, then moves theta: a predict in another
    thread between the two steps must still compute on one library (it raised TypeError,
    5 times in ~8000 predicts under a concurrent fit)."""
    torch = pytest.importorskip("torch")
    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0), X, y)
    expected = clf.predict_proba(X)
    numpy_theta = clf._theta
    torch_clf = _fit_quietly(MLPClassifier((10,), max_iter=1, random_state=0), torch.asarray(X), torch.asarray(y))
    clf._backend = torch_clf._backend  # half-way through the move: the backend is torch's, theta NumPy's
    assert isinstance(clf._theta, np.ndarray) and clf._theta is numpy_theta
    np.testing.assert_allclose(clf.predict_proba(torch.asarray(X)).numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(torch.asarray(X)).numpy(), expected.argmax(axis=1))


@pytest.mark.gpu
def test_cuda_device_string_trains_on_gpu(digits):
    from tests.conftest import _cuda_available

    if not _cuda_available():
        pytest.skip("needs a CUDA GPU")
    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0, device="cuda"), X, y)
    assert clf._backend.name == "cupy"
    reference = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0), X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-8)


def test_device_without_float64_trains_in_float32(digits):
    """Like torch's MPS: float64 NumPy input is cast to float32 on the host, once."""
    pytest.importorskip("array_api_strict")
    X, y = digits
    clf = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0, backend="array_api_strict",
                                     device="no_float64"), X, y)
    assert "float32" in str(clf._theta.dtype)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float32
    reference = _fit_quietly(MLPClassifier((10,), max_iter=3, random_state=0), X.astype(np.float32), y)
    np.testing.assert_allclose(proba, reference.predict_proba(X.astype(np.float32)), atol=1e-5)


@pytest.mark.parametrize("params", SOLVERS, ids=lambda p: p["solver"] + ("-es" if p.get("early_stopping") else ""))
def test_training_needs_no_data_dependent_shapes(digits, regression, params):
    """Boolean masks, nonzero and unique wait for the GPU (the result's size lives there).

    array_api_strict can refuse them; fits (with sample weights, early stopping) must not need them.
    """
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    X, y = digits
    Xr, yr = regression
    on_device = lambda a: xps.asarray(a, device=device)  # noqa: E731
    xps.set_array_api_strict_flags(data_dependent_shapes=False, boolean_indexing=False)
    try:
        clf = _fit_quietly(MLPClassifier((8,), random_state=0, **params), on_device(X), on_device(y),
                           sample_weight=on_device(np.linspace(0.5, 1.5, len(y))))
        clf.predict_proba(on_device(X))
        reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), random_state=0, **params), on_device(Xr), on_device(yr))
        reg.predict(on_device(Xr))
    finally:
        xps.reset_array_api_strict_flags()
    assert clf.n_iter_ >= 1 and reg.n_iter_ >= 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_matches_the_standard_clip_bit_for_bit(backend, dtype):
    """The libraries' own clip (one pass, no sync) gives array-api-compat's values and dtype."""
    import array_api_compat

    from anymlp._backend import clip

    if backend.dtype_name is not None and backend.dtype_name != dtype:
        pytest.skip("backend forces another dtype")
    values = np.array([-np.inf, -1.0, -0.0, 0.0, 1e-30, 0.25, 1.0, 2.0, np.inf, np.nan], dtype=dtype)
    x = backend.asarray(values)
    xp = array_api_compat.array_namespace(x)
    eps = float(np.finfo(dtype).eps)
    got, expected = clip(x, eps, 1 - eps, xp=xp), xp.clip(x, eps, 1 - eps)
    assert backend.is_own(got) and got.dtype == x.dtype
    np.testing.assert_array_equal(backend.numpy(got), backend.numpy(expected))
    assert backend.numpy(x).tobytes() == values.tobytes()  # input untouched


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_relu_derivative_is_where_bit_for_bit(backend, dtype):
    """``zeroed_where_zero`` (NumPy: delta's bits ANDed with a mask) is ``where(z == 0, 0, delta)``
    to the bit: +0.0 where z is 0 or -0.0, delta kept (NaN, infinities, -0.0) elsewhere,
    also where z is NaN; z untouched."""
    import array_api_compat

    from anymlp._backend import zeroed_where_zero

    if backend.dtype_name is not None and backend.dtype_name != dtype:
        pytest.skip("backend forces another dtype")
    rng = np.random.default_rng(3)
    z_values = np.maximum(rng.standard_normal((40, 9)), 0).astype(dtype)
    z_values[0, :4] = [np.nan, -0.0, 0.0, np.inf]
    d_values = rng.standard_normal((40, 9)).astype(dtype)
    d_values[:2, :4] = [[np.inf, -np.inf, np.nan, -0.0], [-np.nan, -0.0, -1.0, np.inf]]
    z, delta = backend.asarray(z_values), backend.asarray(d_values)
    xp = array_api_compat.array_namespace(z)
    expected = backend.numpy(xp.where(z == 0, 0.0, delta))
    got = zeroed_where_zero(z, delta, xp=xp)
    assert backend.is_own(got) and got.dtype == delta.dtype
    assert backend.numpy(got).tobytes() == expected.tobytes()
    assert backend.numpy(z).tobytes() == z_values.tobytes()


def test_the_numpy_relu_derivative_takes_any_layout_and_read_only_delta():
    from anymlp._backend import _numpy_namespace, zeroed_where_zero

    rng = np.random.default_rng(4)
    z = np.maximum(rng.standard_normal((30, 8)), 0)
    delta = rng.standard_normal((30, 8))
    expected = np.where(z == 0, 0.0, delta)
    for z_in, delta_in, want in ((np.asfortranarray(z), delta.copy(order="F"), expected),
                                 (z[:, ::2], delta.copy()[:, ::2], expected[:, ::2])):
        got = zeroed_where_zero(z_in, delta_in, xp=_numpy_namespace())
        assert got.tobytes(order="C") == np.ascontiguousarray(want).tobytes()
    frozen = delta.copy()
    frozen.flags.writeable = False
    got = zeroed_where_zero(z, frozen, xp=_numpy_namespace())
    assert got.tobytes() == expected.tobytes() and frozen.tobytes() == delta.tobytes()


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_torch_sparse_X_trains_like_dense(layout, solver):
    """Sparse torch X of any common layout trains and predicts as its dense self (CSR and
    CSC go through COO, the layout torch can take rows of)."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4)) * (rng.uniform(size=(60, 4)) > 0.5)
    dense, y = torch.asarray(X), torch.asarray((X[:, 0] > 0).astype(np.int64))
    sparse = dense.to_sparse() if layout == "coo" else getattr(dense, f"to_sparse_{layout}")()
    params = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0)
    a, b = (_fit_quietly(MLPClassifier(**params), data, y) for data in (sparse, dense))
    np.testing.assert_allclose(a.predict_proba(sparse).numpy(), b.predict_proba(dense).numpy(), rtol=1e-10, atol=1e-12)
    a._chunk_rows = b._chunk_rows = lambda dtype: 16  # large inputs: predicted in row chunks (slices)
    np.testing.assert_allclose(a.predict_proba(sparse).numpy(), b.predict_proba(dense).numpy(), rtol=1e-10, atol=1e-12)


def test_device_input_predicted_on_the_numpy_backend():
    """backend="numpy" computes torch input on the host, in the model's dtype, and answers in torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 3)).astype(np.float32), rng.randint(0, 2, 40)
    clf = _fit_quietly(MLPClassifier((5,), max_iter=5, random_state=0, backend="numpy"), torch.asarray(X),
                       torch.asarray(y))
    proba = clf.predict_proba(torch.asarray(X.astype(np.float64)))
    assert isinstance(clf._theta, np.ndarray) and torch.is_tensor(proba) and proba.dtype == torch.float32
    np.testing.assert_allclose(proba.numpy(), clf.predict_proba(X), rtol=1e-6)


def test_cupy_l2_penalty_is_one_inner_product():
    """CuPy has no vecdot, and array-api-compat's stand-in conjugates a copy of the weights
    before a (1, n) @ (n, 1) product; a 1-D @ 1-D product is the inner product itself."""
    import types

    from anymlp._backend import squared_norm

    fake_cupy = types.ModuleType("cupy")
    fake_cupy.vecdot = lambda *args, **kwargs: pytest.fail("array-api-compat's vecdot was used")

    class Weights:
        def __matmul__(self, other):
            return ("inner product", other is self)

    assert squared_norm(Weights(), xp=fake_cupy) == ("inner product", True)


@pytest.mark.gpu
def test_cupy_l2_penalty_matches_float64():
    from tests.conftest import _cuda_available

    if not _cuda_available():
        pytest.skip("needs a CUDA GPU")
    import array_api_compat.cupy as xc
    import cupy

    from anymlp._backend import squared_norm

    w = np.random.default_rng(0).random(668672, dtype=np.float32)
    value = squared_norm(cupy.asarray(w), xp=xc)
    assert value.shape == () and abs(float(value) - float(np.dot(w.astype(np.float64), w))) <= 1e-6 * float(value)


def test_a_model_fit_in_inference_mode_predicts_numpy_input():
    """Inference-mode tensors refuse to report their version counter; the predict cache
    must do without it."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 3)), rng.randint(0, 2, 40)
    with torch.inference_mode():
        clf = _fit_quietly(MLPClassifier((4,), max_iter=3, random_state=0), torch.asarray(X), torch.asarray(y))
    np.testing.assert_allclose(clf.predict_proba(X), clf.predict_proba(torch.asarray(X)).numpy(), atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("n_outputs", [3, 10])  # 10: NumPy sums pairwise from 8 on
@pytest.mark.parametrize("fold", [None, 3, 1024])  # None: the default; 3 folds 31 batches unevenly, 1024 never
def test_epoch_loss_combined_on_the_host_is_the_device_sum(backend, dtype, weighted, alpha, n_outputs, fold,
                                                           monkeypatch):
    """Each batch's loss parts come back once per epoch and are combined on the host: the same
    bits as combining them on the device and summing ``loss * rows`` there in batch order.
    (torch and CuPy round their own reductions and divisions: torch adds 8 or more outputs in
    its own order, and on CUDA divides by a scalar as a multiply by its reciprocal.)"""
    from array_api_compat import array_namespace

    from anymlp.nn.losses import LossTerms
    from anymlp.training.stochastic import EpochLosses, read_epoch_end

    rng = np.random.default_rng(3)
    # Terms of both signs keep the epoch sum small, so a batch loss off by one bit shows in it.
    on_device = lambda v: backend.asarray(np.asarray(v, dtype=dtype))  # noqa: E731
    batch_losses = []
    for rows in [10] * 30 + [3]:  # a shorter last batch, as gen_batches makes; enough for pairwise sums to differ
        sw_sum = on_device(rng.uniform(0.5, 1.5, rows).sum()) if weighted else rows
        penalties = tuple(on_device(rng.uniform(10, 100)) for _ in range(3)) if alpha else ()
        terms = LossTerms(on_device(rng.uniform(-300, 300, n_outputs)), -1.0, sw_sum, penalties, alpha)
        batch_losses.append((terms, rows))
    theta = backend.asarray(rng.normal(size=5).astype(dtype))
    xp = array_namespace(theta)

    expected = None
    for terms, rows in batch_losses:
        times_rows = terms.value(xp=xp) * rows
        expected = times_rows if expected is None else expected + times_rows
    if fold is not None:
        monkeypatch.setattr(EpochLosses, "FOLD", fold)
    losses = EpochLosses(xp)
    for terms, rows in batch_losses:
        losses.add(terms, rows)
    end = read_epoch_end(losses, theta, xp=xp)
    loss = end.loss_total
    assert end.theta_finite and not end.zero_weight_batch
    if backend.id == "cupy" or (backend.id == "torch" and (n_outputs >= 8 or theta.device.type != "cpu")):
        # rounding of each term (~3000) in 31 terms
        assert loss == pytest.approx(float(to_host(expected)), abs=1e5 * float(np.finfo(dtype).eps))
    else:
        assert loss == float(to_host(expected))


# ------------------------------------------------- sparse torch input beyond the torch backend


def _sparse_problem(torch):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4)) * (rng.uniform(size=(60, 4)) > 0.5)
    return X, (X[:, 0] > 0).astype(np.int64), torch.asarray(X).to_sparse()


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_torch_sparse_X_with_bad_values_gets_scikit_learns_message(layout, bad, message):
    torch = pytest.importorskip("torch")
    X, y, _ = _sparse_problem(torch)
    X[7, 2] = bad
    dense = torch.asarray(X)
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    with pytest.raises(ValueError, match=f"Input X contains {message}"):
        MLPClassifier(max_iter=1).fit(sparse, torch.asarray(y))


def test_torch_sparse_X_on_the_numpy_backend_is_scipy_sparse_X():
    """Computed on the host as SciPy's CSR matrix: the weights of a fit on that matrix, bit for bit."""
    import scipy.sparse

    torch = pytest.importorskip("torch")
    X, y, sparse = _sparse_problem(torch)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    ours = _fit_quietly(MLPClassifier(backend="numpy", **params), sparse, torch.asarray(y))
    theirs = _fit_quietly(MLPClassifier(**params), scipy.sparse.csr_matrix(X), y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert np.array_equal(a, b)
    proba = ours.predict_proba(sparse)
    assert torch.is_tensor(proba)
    assert np.array_equal(proba.numpy(), theirs.predict_proba(scipy.sparse.csr_matrix(X)))
    # A model trained on NumPy predicts sparse torch input too (on torch: the input's library).
    np.testing.assert_allclose(theirs.predict_proba(sparse).numpy(), proba.numpy(), rtol=1e-12)


def test_torch_sparse_X_elsewhere_than_numpy_or_torch_says_so():
    torch = pytest.importorskip("torch")
    _, y, sparse = _sparse_problem(torch)
    with pytest.raises(TypeError, match="Sparse X is supported on the NumPy backend only"):
        MLPClassifier(max_iter=1, backend="array_api_strict").fit(sparse, torch.asarray(y))


def test_torch_sparse_X_stays_on_its_device_under_a_memory_budget():
    """The budget is for dense copies; sparse X is neither streamed nor densified."""
    torch = pytest.importorskip("torch")
    _, y, sparse = _sparse_problem(torch)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    free = _fit_quietly(MLPClassifier(**params), sparse, torch.asarray(y))
    with anymlp.config_context(fit_memory_budget=100):
        budgeted = _fit_quietly(MLPClassifier(**params), sparse, torch.asarray(y))
        proba = budgeted.predict_proba(sparse)
    assert torch.equal(budgeted._theta, free._theta)
    assert torch.equal(proba, free.predict_proba(sparse))


def test_hybrid_sparse_torch_X_trains_as_its_dense_self():
    torch = pytest.importorskip("torch")
    X, y, _ = _sparse_problem(torch)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    hybrid = _fit_quietly(MLPClassifier(**params), torch.asarray(X).to_sparse(sparse_dim=1), torch.asarray(y))
    dense = _fit_quietly(MLPClassifier(**params), torch.asarray(X), torch.asarray(y))
    assert torch.equal(hybrid._theta, dense._theta)


@pytest.mark.parametrize("what", ["y", "sample_weight"])
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_sparse_torch_y_and_sample_weight_are_refused_plainly(what, estimator):
    torch = pytest.importorskip("torch")
    X, y, _ = _sparse_problem(torch)
    X, y, sw = torch.asarray(X), torch.asarray(y).double(), torch.ones(60, dtype=torch.float64)
    if what == "y":
        y = y.to_sparse()
    else:
        sw = sw.to_sparse()
    with pytest.raises(ValueError, match=f"{what} is a sparse torch tensor.*{what}.to_dense"):
        estimator(max_iter=1).fit(X, y, sample_weight=sw)


def test_a_zero_dimensional_sample_weight_weighs_every_sample(device_backend):
    rng = np.random.RandomState(0)
    X, y = device_backend.asarray(rng.normal(size=(60, 4))), device_backend.asarray(np.arange(60) % 2)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    scalar = _fit_quietly(MLPClassifier(**params), X, y, sample_weight=device_backend.asarray(np.float64(2.0)))
    full = _fit_quietly(MLPClassifier(**params), X, y, sample_weight=device_backend.asarray(np.full(60, 2.0)))
    assert np.array_equal(device_backend.numpy(scalar._theta), device_backend.numpy(full._theta))


# ------------------------------------------------------------------ device names


@pytest.mark.parametrize("device", ["gpu", "CPU", "device1", "cuda0"])
def test_a_device_name_torch_does_not_know_is_a_plain_value_error(digits, device):
    torch = pytest.importorskip("torch")
    X, y = digits
    with pytest.raises(ValueError, match=f"device='{device}' is not a device name torch knows"):
        MLPClassifier(max_iter=1, backend="torch", device=device).fit(torch.asarray(X), torch.asarray(y))


def test_a_device_that_is_not_a_name_is_a_plain_value_error(digits):
    torch = pytest.importorskip("torch")
    X, y = digits
    with pytest.raises(ValueError, match=r"device=1\.5: give a device name"):
        MLPClassifier(max_iter=1, device=1.5).fit(torch.asarray(X), torch.asarray(y))


def test_a_bare_device_index_means_that_cuda_device(digits):
    """As torch reads ``torch.device(1)`` on a CUDA machine (and CuPy here takes it too)."""
    torch = pytest.importorskip("torch")
    from anymlp._backend import _torch_device

    if torch.cuda.is_available():
        assert _torch_device(0) == torch.device("cuda", 0)
        return
    X, y = digits
    with pytest.raises(BackendUnavailableError, match="device='cuda:1' was requested"):
        MLPClassifier(max_iter=1, device=1).fit(torch.asarray(X), torch.asarray(y))


@pytest.mark.parametrize("device", ["mps", "meta", "xpu"])
def test_a_device_type_torch_cannot_compute_on_here_is_unavailable(digits, device):
    torch = pytest.importorskip("torch")
    if device == "mps" and torch.backends.mps.is_available() or device == "xpu" and torch.xpu.is_available():
        pytest.skip(f"this machine has {device}")
    X, y = digits
    Xt, yt = torch.asarray(X), torch.asarray(y)
    with pytest.raises(BackendUnavailableError, match=f"cannot compute on '{device}' devices"):
        MLPClassifier(max_iter=1, device=device).fit(Xt, yt)
    # Refused before anything moved: a fitted model asked to continue there keeps working.
    model = _fit_quietly(MLPClassifier(max_iter=2, random_state=0, warm_start=True), Xt, yt)
    before = model.predict_proba(Xt)
    model.set_params(device=device)
    with pytest.raises(BackendUnavailableError):
        model.fit(Xt, yt)
    model.set_params(device=None)
    assert torch.equal(model.predict_proba(Xt), before)


def test_array_api_strict_device_names(digits):
    import array_api_strict as xps

    X, y = digits
    Xs, ys = xps.asarray(X), xps.asarray(y)
    model = _fit_quietly(MLPClassifier(max_iter=2, random_state=0, device="cpu"), Xs, ys)
    assert model._theta.device == xps.Device("CPU_DEVICE")
    with pytest.raises(ValueError, match="device='gpu' is not an array_api_strict device"):
        MLPClassifier(max_iter=1, device="gpu").fit(Xs, ys)


@pytest.mark.parametrize("text", ["2GiB", "abc", "-5", "0", "inf"])
def test_a_bad_memory_budget_in_the_environment_names_the_variable(monkeypatch, text):
    monkeypatch.setenv("ANYMLP_FIT_MEMORY_BUDGET", text)
    with pytest.raises(ValueError, match=f"ANYMLP_FIT_MEMORY_BUDGET='{text}' is not a positive number of bytes"):
        anymlp.get_config()


@pytest.mark.parametrize("budget", ["abc", True, -1, float("nan"), float("inf")])
def test_set_config_refuses_a_memory_budget_that_is_not_bytes(budget):
    with pytest.raises(ValueError, match="fit_memory_budget must be a positive number of bytes"):
        anymlp.set_config(fit_memory_budget=budget)
    assert anymlp.get_config()["fit_memory_budget"] is None


@pytest.mark.parametrize("joblib_backend", ["threading", "loky"])
def test_estimator_backend_travels_to_parallel_workers(digits, joblib_backend):
    """The README's advice for grid searches: backend= on the estimator reaches every worker
    (set_config is per thread and does not)."""
    pytest.importorskip("torch")
    import joblib
    from sklearn.model_selection import cross_val_score

    X, y = digits
    on_torch = lambda est, X, y: float(est._backend.name == "torch")  # noqa: E731
    with joblib.parallel_backend(joblib_backend, n_jobs=2), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # two epochs
        scores = cross_val_score(MLPClassifier(max_iter=2, backend="torch"), X, y, cv=2, scoring=on_torch)
    assert list(scores) == [1.0, 1.0]


# ------------------------------------------- the memory budget on every path that moves X


def _rows_sent(monkeypatch):
    """Records the row count of every 2-D array the estimators move to a backend."""
    import anymlp.estimators.base as base

    sent, original = [], base.to_device

    def recording(x, backend, dtype=None):
        if getattr(x, "ndim", 0) == 2:
            sent.append(x.shape[0])
        return original(x, backend, dtype)

    monkeypatch.setattr(base, "to_device", recording)
    return sent


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_every_chunk_of_streamed_X_fits_the_budget(monkeypatch, solver):
    """L-BFGS's full-batch passes, predict, and predict by a model loaded from a pickle
    (whose fit backend is NumPy until it computes) move X in chunks within the budget;
    the stochastic solvers move one batch at a time (200 rows here)."""
    import pickle

    pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(300, 12)).astype(np.float32), np.arange(300) % 3
    budget_rows = 30
    sent = _rows_sent(monkeypatch)
    with anymlp.config_context(fit_memory_budget=budget_rows * 12 * 4):
        model = _fit_quietly(MLPClassifier(backend="torch", solver=solver, max_iter=3, random_state=0), X, y)
        assert sent and max(sent) <= (budget_rows if solver == "lbfgs" else 200)
        sent.clear()
        streamed = model.predict_proba(X)
        loaded = pickle.loads(pickle.dumps(model))
        assert max(sent) <= budget_rows
        sent.clear()
        assert np.array_equal(loaded.predict_proba(X), streamed)
        assert max(sent) <= budget_rows


def test_the_budget_does_not_change_what_another_library_predicts():
    """A torch model asked about float64 NumPy X answers on NumPy (in float64), budget or not."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(300, 12)).astype(np.float32), np.arange(300) % 3
    model = _fit_quietly(MLPClassifier(max_iter=3, random_state=0), torch.asarray(X), torch.asarray(y))
    free = model.predict_proba(X.astype(np.float64))
    with anymlp.config_context(fit_memory_budget=100):
        budgeted = model.predict_proba(X.astype(np.float64))
    assert free.dtype == budgeted.dtype == np.float64 and np.array_equal(free, budgeted)


def test_bfloat16_torch_X_streams_like_it_trains():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X = torch.asarray(rng.normal(size=(300, 12)).astype(np.float32)).bfloat16()
    y = torch.asarray(np.arange(300) % 3)
    params = dict(max_iter=3, random_state=0)
    free = _fit_quietly(MLPClassifier(**params), X, y)
    with anymlp.config_context(fit_memory_budget=100):
        budgeted = _fit_quietly(MLPClassifier(**params), X, y)
        proba = budgeted.predict_proba(X)
    assert torch.equal(budgeted._theta, free._theta)
    # Streamed in chunks of a few rows: products over fewer rows may round differently.
    np.testing.assert_allclose(proba.numpy(), free.predict_proba(X).numpy(), rtol=1e-12)


def test_in_place_edits_reach_predictions_on_another_library():
    """A model without a change counter (array_api_strict, CuPy) converts its parameters
    for each predict on another library, so an edit through coefs_ is never missed."""
    import array_api_strict as xps

    device = xps.Device("device1")
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(60, 4)), np.arange(60) % 2
    model = _fit_quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0),
                         xps.asarray(X, device=device), xps.asarray(y, device=device))
    before = model.predict_proba(X)
    model.coefs_[1][...] = 0
    model.intercepts_[1][...] = 0
    assert np.allclose(model.predict_proba(X), 0.5) and not np.allclose(before, 0.5)



def test_partial_fit_takes_device_classes_and_device_multilabel_y():
    """Labels are encoded on the host, with an explicit copy: array_api_strict's device1
    refuses the implicit one scikit-learn's np.asarray would make."""
    xps = pytest.importorskip("array_api_strict")
    device = xps.Device("device1")
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 4)), rng.randint(0, 3, 60)
    Xd, yd = xps.asarray(X, device=device), xps.asarray(y, device=device)
    params = dict(hidden_layer_sizes=(5,), random_state=0)
    on_device = MLPClassifier(**params).partial_fit(Xd, yd, classes=xps.arange(3, device=device))
    on_device.partial_fit(Xd, yd, classes=xps.arange(3, device=device))
    on_host = MLPClassifier(**params).partial_fit(X, y, classes=np.arange(3)).partial_fit(X, y, classes=np.arange(3))
    np.testing.assert_allclose(to_host(on_device.coefs_[0]), on_host.coefs_[0], rtol=1e-12)
    Y = np.stack([y == 0, y == 1], axis=1).astype(np.int64)
    multilabel = MLPClassifier(**params).partial_fit(Xd, xps.asarray(Y, device=device), classes=np.arange(2))
    assert multilabel._label_binarizer.y_type_ == "multilabel-indicator"
    assert tuple(multilabel.predict(Xd).shape) == (60, 2)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_a_model_fit_in_inference_mode_trains_and_takes_parameters_outside_it(solver):
    """torch refuses in-place changes to inference tensors outside inference mode: the model
    copies its parameters and optimizer state once, as for a read-only loaded model."""
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X, y = torch.asarray(rng.normal(size=(40, 3))), torch.asarray(rng.randint(0, 3, 40))
    params = dict(hidden_layer_sizes=(4,), solver=solver, max_iter=3, random_state=0)
    with torch.inference_mode():
        inside = _fit_quietly(MLPClassifier(**params), X, y)
    outside = _fit_quietly(MLPClassifier(**params), X, y)
    for model in (inside, outside):
        if solver == "lbfgs":
            _fit_quietly(model.set_params(warm_start=True), X, y)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.partial_fit(X, y)
    for a, b in zip(inside.coefs_ + inside.intercepts_, outside.coefs_ + outside.intercepts_):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    inside.coefs_[0] = torch.zeros(3, 4, dtype=torch.float64)
    inside.intercepts_[1] = torch.ones(3, dtype=torch.float64)
    assert float(inside.coefs_[0].abs().sum()) == 0 and float(inside.intercepts_[1].sum()) == 3
    with torch.inference_mode():
        edited = _fit_quietly(MLPClassifier(**params), X, y)
    edited.coefs_[1][:] = 0  # in place, through the views
    assert float(edited.coefs_[1].abs().sum()) == 0


def test_meta_tensors_get_a_plain_error(digits):
    torch = pytest.importorskip("torch")
    X, y = digits
    Xt, yt = torch.asarray(X), torch.asarray(y)
    fitted = _fit_quietly(MLPClassifier((5,), max_iter=2), Xt, yt)
    for X_, y_ in [(Xt.to("meta"), yt.to("meta")), (X, yt.to("meta")), (Xt.to("meta"), y)]:
        with pytest.raises(ValueError, match="'meta' device, which holds shapes but no values"):
            MLPClassifier((5,), max_iter=2).fit(X_, y_)
    with pytest.raises(ValueError, match="'meta' device"):
        fitted.predict_proba(Xt.to("meta"))


def test_a_device_column_target_warns_as_a_host_one(regression):
    torch = pytest.importorskip("torch")
    from sklearn.exceptions import DataConversionWarning

    X, Y = regression
    y = Y[:, :1]
    for X_, y_ in [(X, y), (torch.asarray(X), torch.asarray(y))]:
        with warnings.catch_warnings(), pytest.warns(DataConversionWarning, match="column-vector y"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X_, y_)
        assert model.n_outputs_ == 1


def test_device_objects_name_their_library(digits):
    torch = pytest.importorskip("torch")
    xps = pytest.importorskip("array_api_strict")
    X, y = digits
    params = dict(hidden_layer_sizes=(5,), max_iter=2, random_state=0)
    strict = _fit_quietly(MLPClassifier(**params, device=xps.Device("device1")), X, y)
    assert strict._backend.name == "array_api_strict" and strict._backend.device == xps.Device("device1")
    on_torch = _fit_quietly(MLPClassifier(**params, device=torch.device("cpu")), X, y)
    assert on_torch._backend.name == "torch"
    Xs, ys = xps.asarray(X, device=xps.Device("device1")), xps.asarray(y, device=xps.Device("device1"))
    assert _fit_quietly(MLPClassifier(**params, device=xps.Device("device1")), Xs, ys)._backend.name == \
        "array_api_strict"
    with pytest.raises(ValueError, match=r"device=device\(type='cpu'\) is not an array_api_strict device"):
        MLPClassifier(**params, device=torch.device("cpu")).fit(Xs, ys)


def test_a_step_workspace_is_the_plain_objective_with_views_and_buffer_kept(backend):
    """The stochastic loop's steps share views of theta (while theta is the same array) and one
    gradient buffer (where the library writes with out=): each step's loss parts and gradient
    are those of a call without the workspace, also after theta is updated in place and
    after it is replaced."""
    from array_api_compat import array_namespace

    from anymlp.kernels import fused_for
    from anymlp.nn import Architecture, Layout, StepWorkspace, loss_and_grad

    rng = np.random.RandomState(0)
    arch = Architecture(Layout((5, 7, 6, 3)), "relu", "log_loss")
    theta = backend.asarray(rng.uniform(-0.5, 0.5, arch.layout.n_params))
    if backend.id == "numpy-readonly":
        theta = np.array(theta)  # the optimizers own theta and write it
    xp = array_namespace(theta)
    X = backend.asarray(rng.normal(size=(20, 5)))
    Y = backend.asarray(np.eye(3)[rng.randint(0, 3, 20)])
    workspace, buffers = StepWorkspace(arch.layout), []
    for step in range(4):
        if step == 2:
            theta = xp.asarray(theta, copy=True)  # a new array: the views must follow it
        loss, grad = loss_and_grad(theta, X, Y, None, arch, 1e-3, xp=xp, finish=False, workspace=workspace)
        expected_loss, expected = loss_and_grad(theta, X, Y, None, arch, 1e-3, xp=xp, finish=False)
        np.testing.assert_array_equal(backend.numpy(grad.raw), backend.numpy(expected.raw))
        np.testing.assert_array_equal(backend.numpy(loss.per_output), backend.numpy(expected_loss.per_output))
        buffers.append(grad.raw)
        if fused_for(theta) is not None or isinstance(theta, np.ndarray):
            theta *= 0.5  # in place, as the optimizers update it
        else:
            theta = theta * 0.5
    reused = isinstance(theta, np.ndarray) or (backend.id == "torch" and fused_for(theta) is not None)
    assert all(b is buffers[0] for b in buffers) == reused
