"""Bad input, divergence, interruption, determinism: clear errors and nothing lost."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning

from anymlp import DivergenceWarning, MLPClassifier, MLPRegressor
from anymlp._backend import to_host


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:240] / 16.0, y[:240]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- bad input


def _with(X, row, col, value):
    X = np.array(X, dtype=float)
    X[row, col] = value
    return X


BAD_X = [
    ("nan", lambda X: _with(X, 3, 2, np.nan), "contains NaN"),
    ("inf", lambda X: _with(X, 0, 0, np.inf), "infinity"),
    ("1d", lambda X: X[:, 0], "Expected 2D array"),
    ("3d", lambda X: X[:, :, None], "dim 3|3D array"),
    ("no rows", lambda X: X[:0], "0 sample"),
    ("no features", lambda X: X[:, :0], "0 feature"),
]


@pytest.mark.parametrize("name, corrupt, match", BAD_X, ids=[b[0] for b in BAD_X])
def test_bad_X_is_refused_before_training(backend, digits, name, corrupt, match):
    X, y = digits
    bad = corrupt(X)
    Xb = backend.asarray(bad) if bad.ndim else bad
    yb = backend.asarray(y[: bad.shape[0]]) if bad.shape[0] else backend.asarray(y[:0])
    with pytest.raises(ValueError, match=match):
        MLPClassifier(max_iter=1).fit(Xb, yb)


# Host X's NaN/inf check: a BLAS probe first (X @ ones) for large wide X, np.sum for the rest,
# scikit-learn's own check when neither is clean. The outcome must be scikit-learn's.
def _layouts(X):
    return {
        "C": np.ascontiguousarray(X), "F": np.asfortranarray(X), "strided": np.repeat(X, 2, axis=1)[:, ::2],
        "one column": np.ascontiguousarray(X[:, 5:6]), "one row": np.ascontiguousarray(X[-1:]),
    }


HUGE = np.finfo(np.float32).max


@pytest.fixture(scope="module")
def wide():
    """Large enough (70400 values, 64 wide) for the BLAS probe."""
    rng = np.random.default_rng(0)
    return rng.random((1100, 64)), rng.integers(0, 3, 1100)


def _outcome(validate):
    try:
        validate()
    except ValueError as error:
        return str(error).replace("SkMLPClassifier", "MLPClassifier").replace("SkMLPRegressor", "MLPRegressor")
    return "accepted"


@pytest.mark.parametrize("layout", ["C", "F", "strided", "one column", "one row"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value, at", [
    (np.nan, (0, 0)), (np.inf, (1099, 63)), (-np.inf, (1099, 5)), (HUGE, None), (None, None)])
def test_host_X_finiteness_is_scikit_learns(wide, layout, dtype, value, at):
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    from sklearn.utils.validation import validate_data

    X, y = wide
    X = X.astype(dtype)
    if value == HUGE:
        X[:, :] = value  # every value finite, every sum overflows
    elif value is not None:
        X[at] = value
    X = _layouts(X)[layout]
    y = y[: X.shape[0]]

    ours = _outcome(lambda: MLPClassifier()._validate_fit_data(X, y, reset=True))
    theirs = _outcome(lambda: validate_data(SkMLPClassifier(), X, y, multi_output=True, reset=True,
                                            dtype=(np.float64, np.float32), accept_sparse=["csr", "csc"]))
    assert ours == theirs
    assert (ours == "accepted") == bool(np.isfinite(X).all())


def test_host_X_probe_replaces_scikit_learns_first_pass(monkeypatch, wide):
    from anymlp.estimators import _validation

    seen = []
    original = _validation.validate_data
    monkeypatch.setattr(_validation, "validate_data",
                        lambda *a, **k: seen.append(k.get("ensure_all_finite", True)) or original(*a, **k))
    X, y = wide
    for clean in (X, np.asfortranarray(X), X[:20]):  # the BLAS probe twice, np.sum once
        MLPClassifier()._validate_fit_data(clean, y[: clean.shape[0]], reset=True)
    bad = X.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        MLPClassifier()._validate_fit_data(bad, y, reset=True)
    MLPClassifier()._validate_fit_data(X.tolist(), y, reset=True)  # a list: scikit-learn's way
    assert seen == [False, False, False, True, True]


@pytest.mark.parametrize("estimator, bad_y", [
    ("MLPRegressor", lambda y: np.where(np.arange(len(y)) == 7, np.nan, y)),
    ("MLPRegressor", lambda y: np.column_stack([y, np.where(np.arange(len(y)) == 9, np.inf, y)])),
    ("MLPClassifier", lambda y: np.where(np.arange(len(y)) == 3, np.nan, y)),
])
def test_bad_y_beside_clean_probed_X_is_scikit_learns_error(wide, estimator, bad_y):
    import sklearn.neural_network

    import anymlp

    X, y = wide
    y = bad_y(y.astype(float))
    ours = _outcome(lambda: getattr(anymlp, estimator)(max_iter=1).fit(X, y))
    theirs = _outcome(lambda: getattr(sklearn.neural_network, estimator)(max_iter=1).fit(X, y))
    assert ours == theirs and "y contains" in ours


def test_bad_X_is_reported_before_bad_y_as_in_scikit_learn(wide):
    X, y = wide
    X, y = X.copy(), y.astype(float)
    X[1, 1], y[2] = np.nan, np.inf
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPRegressor(max_iter=1).fit(X, y)


def test_assume_finite_skips_the_check_as_in_scikit_learn(monkeypatch, wide):
    import sklearn

    from anymlp.estimators import _validation

    X, y = wide
    model = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit, X, y)
    bad = X.copy()
    bad[0, 0] = np.nan
    calls = []
    original = _validation.validate_data
    monkeypatch.setattr(_validation, "validate_data", lambda *a, **k: calls.append(k) or original(*a, **k))
    with sklearn.config_context(assume_finite=True):
        Xv, _ = MLPClassifier()._validate_fit_data(bad, y, reset=True)
        assert np.isnan(Xv[0, 0])
        assert calls[-1]["ensure_all_finite"] is False
        calls.clear()
        model.predict_proba(X[:1])  # the predict shortcut, as without assume_finite
        assert calls == []


@pytest.mark.parametrize("layout", ["C", "F", "strided", "one row"])
@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (np.inf, "infinity"), (HUGE, None)])
def test_predict_refuses_bad_X_in_any_layout(wide, layout, bad, message):
    X, y = wide
    model = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit, X, y)
    X = X.astype(np.float32)
    if bad == HUGE:
        X[:, :] = bad
    else:
        X[-1, 50] = bad
    X = _layouts(X)[layout]
    if message is None:  # finite values whose sums overflow: predicted, as by scikit-learn
        assert model.predict_proba(X).shape == (X.shape[0], 3)
        return
    with pytest.raises(ValueError, match=f"Input X contains {message}"):
        model.predict_proba(X)


def test_nan_in_targets_and_weights(backend, digits):
    X, y = digits
    y_bad = y.astype(float)
    y_bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor(max_iter=1).fit(backend.asarray(X), backend.asarray(y_bad))
    sw = np.ones(len(y))
    sw[2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity|infinity"):
        MLPClassifier(max_iter=1).fit(backend.asarray(X), backend.asarray(y), sample_weight=backend.asarray(sw))


@pytest.mark.parametrize("weights, match", [
    (-np.ones(240), "Negative values"),
    (np.zeros(240), "at least one non-zero"),
    (np.ones(7), "shape|length|samples"),
])
def test_bad_sample_weight(backend, digits, weights, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(max_iter=1).fit(backend.asarray(X), backend.asarray(y), sample_weight=backend.asarray(weights))


def test_feature_count_mismatch_at_predict(backend, digits):
    X, y = digits
    clf = quiet(MLPClassifier((5,), max_iter=2).fit, backend.asarray(X), backend.asarray(y))
    with pytest.raises(ValueError, match="features"):
        clf.predict(backend.asarray(X[:, :10]))


def test_complex_and_object_input(digits):
    X, y = digits
    with pytest.raises(ValueError, match="[Cc]omplex"):
        MLPClassifier(max_iter=1).fit(X + 1j, y)
    with pytest.raises(ValueError):
        MLPClassifier(max_iter=1).fit(np.array([["a", "b"]] * 10, dtype=object), np.arange(10) % 2)


def test_complex_device_input_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="real numbers"):
        MLPClassifier(max_iter=1).fit(torch.ones((10, 2), dtype=torch.complex64), torch.arange(10) % 2)


def test_poisson_refuses_negative_targets(backend):
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="poisson.*y >= 0"):
        MLPRegressor(loss="poisson", max_iter=1).fit(backend.asarray(X), backend.asarray(y))


def test_partial_fit_with_unseen_label(digits):
    X, y = digits
    clf = MLPClassifier((5,)).partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:3], np.array([1, 2, 11]))


# ---------------------------------------------------------------- nothing mutated


def test_user_arrays_are_never_modified(backend, digits):
    X, y = digits
    sw = np.linspace(0.5, 2.0, len(y))
    Xb, yb, swb = backend.asarray(X), backend.asarray(y), backend.asarray(sw)
    before = [backend.numpy(a).copy() for a in (Xb, yb, swb)]
    for solver in ("adam", "sgd", "lbfgs"):
        clf = quiet(MLPClassifier((6,), solver=solver, max_iter=3, early_stopping=solver == "adam").fit, Xb, yb, sample_weight=swb)
        clf.predict_proba(Xb)
        clf.partial_fit(Xb, yb) if solver != "lbfgs" and not clf.early_stopping else None
    for original, arr in zip(before, (Xb, yb, swb)):
        np.testing.assert_array_equal(backend.numpy(arr), original)


# ---------------------------------------------------------------- divergence


def test_divergence_stops_and_keeps_last_finite_weights(backend, digits):
    X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    Xb, yb = backend.asarray(X), backend.asarray(y)
    clf = MLPRegressor(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.5, max_iter=200, random_state=0)
    with pytest.warns(DivergenceWarning, match=r"diverged at epoch (\d+).*learning_rate_init.*scale") as record:
        clf.fit(Xb, yb)
    epoch = int(record[0].message.args[0].split("epoch ")[1].split(":")[0])
    assert [w.category for w in record] == [DivergenceWarning]  # no overflow warnings on top
    assert clf.n_iter_ == epoch == len(clf.loss_curve_)
    assert not np.isfinite(clf.loss_curve_[-1])
    assert np.isfinite(backend.numpy(clf.predict(Xb))).all()
    assert all(np.isfinite(backend.numpy(c)).all() for c in clf.coefs_)


def test_divergence_in_the_first_epoch_raises_without_overflow_warnings():
    """Overflowing weights, L2 term and loss: scikit-learn's error, no NumPy RuntimeWarning."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (X @ rng.normal(size=5)).astype(np.float32)
    est = MLPRegressor(solver="sgd", learning_rate_init=0.5, momentum=0.9, alpha=10.0, max_iter=30,
                       batch_size=20, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            est.fit(X, y)
    assert record == []


def test_divergence_with_early_stopping_keeps_best(digits):
    X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    clf = MLPRegressor(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.5, max_iter=200,
                       random_state=0, early_stopping=True)
    with pytest.warns(DivergenceWarning):
        clf.fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert np.isfinite(clf.predict(X)).all()


def test_no_finite_epoch_raises_sklearn_error():
    X = np.full((20, 3), np.finfo(np.float64).max / 10)
    X[::2] *= -1
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor(max_iter=5).fit(X, y.astype(float))


# ---------------------------------------------------------------- interruption


class InterruptAt:
    """A callback that presses Ctrl-C in the middle of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, estimator, *, epoch):
        self.current = epoch

    def on_batch_end(self, estimator, *, batch, n_batches):
        if self.current == self.epoch and batch == 2:
            raise KeyboardInterrupt


class InterruptAtEpochEnd:
    """Ctrl-C in ``on_epoch_end`` of epoch ``epoch``: after its loss (and validation score)
    were recorded, before the loop took its weights as the last good ones."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, estimator, logs):
        if logs["epoch"] == self.epoch:
            raise KeyboardInterrupt


FITTED = ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")


@pytest.mark.parametrize("where", ["mid-batch", "epoch end"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_interrupt_keeps_last_completed_epoch(backend, digits, early_stopping, where):
    """Ctrl-C in epoch 4, in a batch or after the epoch's loss (and validation score) were
    recorded: the model, weights and history alike, is the one of 3 epochs."""
    X, y = digits
    Xb, yb = backend.asarray(X), backend.asarray(y)
    params = dict(hidden_layer_sizes=(10,), batch_size=32, random_state=0, early_stopping=early_stopping,
                  n_iter_no_change=100)
    reference = quiet(MLPClassifier(max_iter=3, **params).fit, Xb, yb)
    interrupt = InterruptAt(4) if where == "mid-batch" else InterruptAtEpochEnd(4)
    clf = MLPClassifier(max_iter=10, callbacks=[interrupt], **params)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf.fit(Xb, yb)
    assert clf.n_iter_ == 3
    for name in FITTED:
        assert repr(getattr(clf, name, None)) == repr(getattr(reference, name, None)), name
    for a, b in zip(clf.coefs_ + clf.intercepts_, reference.coefs_ + reference.intercepts_):
        assert np.array_equal(backend.numpy(a), backend.numpy(b))

    # ...and a warm start continues from there.
    clf.set_params(warm_start=True, callbacks=None, max_iter=2)
    quiet(clf.fit, Xb, yb)
    assert len(clf.loss_curve_) == 5


class InterruptAtIteration:
    def __init__(self, iteration):
        self.iteration = iteration

    def on_epoch_end(self, estimator, logs):
        if logs["epoch"] == self.iteration:
            raise KeyboardInterrupt


def test_lbfgs_interrupted_keeps_its_last_completed_iteration(backend, digits):
    X, y = digits
    Xb, yb = backend.asarray(X), backend.asarray(y)
    params = dict(hidden_layer_sizes=(10,), solver="lbfgs", random_state=0)
    reference = quiet(MLPClassifier(max_iter=3, **params).fit, Xb, yb)
    clf = MLPClassifier(max_iter=50, callbacks=[InterruptAtIteration(3)], **params)
    with pytest.warns(UserWarning, match="Training interrupted by user.*last completed L-BFGS iteration"):
        clf.fit(Xb, yb)
    assert clf.n_iter_ == 3 and clf.loss_ == reference.loss_
    for a, b in zip(clf.coefs_ + clf.intercepts_, reference.coefs_ + reference.intercepts_):
        assert np.array_equal(backend.numpy(a), backend.numpy(b))


def test_lbfgs_interrupted_before_an_iteration_keeps_the_weights_it_started_from(monkeypatch, digits):
    import anymlp.training.lbfgs as lbfgs

    X, y = digits
    clf = quiet(MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=2, random_state=0).fit, X, y)
    before = [a.copy() for a in clf.coefs_ + clf.intercepts_]
    loss_before = clf.loss_
    original = lbfgs.scipy.optimize.minimize

    def interrupted_minimize(fun, x0, **kwargs):
        fun(x0)
        raise KeyboardInterrupt

    monkeypatch.setattr(lbfgs.scipy.optimize, "minimize", interrupted_minimize)
    clf.set_params(warm_start=True)
    with pytest.warns(UserWarning, match="those it started from if none completed"):
        clf.fit(X, y)
    monkeypatch.setattr(lbfgs.scipy.optimize, "minimize", original)
    assert clf.n_iter_ == 0 and clf.loss_ == loss_before  # the loss at those weights, evaluated again
    for a, b in zip(clf.coefs_ + clf.intercepts_, before):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_same_seed_same_model(backend, digits, solver):
    X, y = digits
    Xb, yb = backend.asarray(X), backend.asarray(y)
    fits = [quiet(MLPClassifier((8,), solver=solver, max_iter=3, random_state=7, early_stopping=solver == "sgd").fit, Xb, yb)
            for _ in range(2)]
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_array_equal(backend.numpy(a), backend.numpy(b))


# ---------------------------------------------------------------- bounded prediction


def test_predict_in_small_chunks_gives_the_same_answer(monkeypatch, backend, digits):
    import anymlp.estimators.base as base

    X, y = digits
    Xb = backend.asarray(X)
    clf = quiet(MLPClassifier((8,), max_iter=3, random_state=0).fit, Xb, backend.asarray(y))
    whole = backend.numpy(clf.predict_proba(Xb))
    monkeypatch.setattr(base, "PREDICT_CHUNK_BYTES", 8 * 100 * 7)  # about 7 rows per chunk
    np.testing.assert_allclose(backend.numpy(clf.predict_proba(Xb)), whole, atol=1e-6)


# ---------------------------------------------------------------- bounded fit memory


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_fit_streams_data_over_the_memory_budget(monkeypatch, digits, solver, early_stopping):
    """Data larger than the budget stays on the host; only batches reach device1."""
    xps = pytest.importorskip("array_api_strict")
    import anymlp
    import anymlp.estimators.base as base

    X, y = digits
    device = xps.Device("device1")
    params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=4, random_state=0, batch_size=32,
                  early_stopping=early_stopping and solver == "adam")
    reference = quiet(MLPClassifier(**params).fit, xps.asarray(X, device=device), xps.asarray(y, device=device))

    largest = []
    original = base.to_device

    def recording(a, backend, dtype=None):
        out = original(a, backend, dtype)
        if out is not None and getattr(out, "ndim", 0) == 2:
            largest.append(out.shape[0] * out.shape[1] * 8)
        return out

    monkeypatch.setattr(base, "to_device", recording)
    monkeypatch.setattr(base, "PREDICT_CHUNK_BYTES", 64 * 8 * 30)
    budget = X.nbytes // 4
    with anymlp.config_context(fit_memory_budget=budget):
        streamed = quiet(MLPClassifier(**params).fit, xps.asarray(X, device=device), xps.asarray(y, device=device))
        proba = streamed.predict_proba(xps.asarray(X, device=device))
    assert largest and max(largest) <= budget
    assert "device1" in repr(proba.device)
    np.testing.assert_allclose(np.from_dlpack(proba.to_device(xps.Device("CPU_DEVICE"))),
                               np.from_dlpack(reference.predict_proba(xps.asarray(X, device=device)).to_device(xps.Device("CPU_DEVICE"))),
                               atol=1e-8)
    assert streamed.n_iter_ == reference.n_iter_


def test_memory_budget_must_be_positive():
    import anymlp

    with pytest.raises(ValueError, match="fit_memory_budget"):
        anymlp.set_config(fit_memory_budget=0)


def test_y_and_sample_weight_on_another_device_move_to_X(digits):
    """array_api_strict refuses to mix devices in one operation: the fit works only if y and
    sample_weight really arrive on X's device."""
    xps = pytest.importorskip("array_api_strict")
    X, y = digits
    device1, device2 = xps.Device("device1"), xps.Device("device2")
    X1, w = xps.asarray(X, device=device1), np.linspace(0.5, 1.5, len(y))
    params = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = MLPClassifier(**params).fit(X1, xps.asarray(y, device=device1),
                                           sample_weight=xps.asarray(w, device=device1))
        mixed = MLPClassifier(**params).fit(X1, xps.asarray(y, device=device2),
                                            sample_weight=xps.asarray(w, device=device2))
    assert mixed._backend.device == device1
    np.testing.assert_array_equal(to_host(mixed.coefs_[0]), to_host(same.coefs_[0]))


def test_predict_memory_is_bounded_by_the_chunk_size(monkeypatch):
    """NumPy reports its allocations to tracemalloc: the peak beyond the result stays
    under the chunk budget and does not grow with the number of rows."""
    import tracemalloc

    import anymlp.estimators.base as base

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40000, 30)).astype(np.float32)
    clf = quiet(MLPClassifier((64,), max_iter=1, random_state=0).fit, X[:500], rng.randint(0, 5, 500))
    budget = 2**20
    monkeypatch.setattr(base, "PREDICT_CHUNK_BYTES", budget)
    extras = []
    for n in (10000, 40000):
        tracemalloc.start()
        proba = clf.predict_proba(X[:n])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        extras.append(peak - 2 * proba.nbytes)  # the result, and the chunks it is joined from
    assert max(extras) < budget
    assert extras[1] < extras[0] + budget / 4


# ---------------------------------------------------------------- found in review


def test_host_targets_beside_device_X(device_backend):
    import pandas as pd

    rng = np.random.RandomState(0)
    X = rng.rand(60, 3)
    y = X.sum(1)
    Xb = device_backend.asarray(X)
    reg = quiet(MLPRegressor(max_iter=2).fit, Xb, y)
    assert device_backend.is_own(reg.predict(Xb))
    for labels in (list(y > 1.5), pd.Series(y > 1.5)):
        clf = quiet(MLPClassifier(max_iter=2).fit, Xb, labels)
        np.testing.assert_array_equal(clf.classes_, [False, True])


def test_torch_input_that_requires_grad_builds_no_graph():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X = torch.asarray(rng.rand(200, 5)).requires_grad_(True)
    clf = quiet(MLPClassifier((4,), max_iter=3).fit, X, torch.asarray(rng.randint(0, 2, 200)))
    assert not clf._theta.requires_grad and clf._theta.grad_fn is None
    assert not clf.predict_proba(X).requires_grad


def test_partial_fit_after_divergence_starts_from_finite_optimizer_state():
    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    reg.partial_fit(X, y)
    with pytest.warns(DivergenceWarning):
        reg.partial_fit(X * 1e200, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        reg.partial_fit(X, y)
    assert np.isfinite(reg.loss_)


def test_first_fit_without_a_finite_epoch_leaves_the_estimator_unfitted():
    from sklearn.exceptions import NotFittedError

    X = np.full((20, 3), np.finfo(np.float64).max / 10)
    X[::2] *= -1
    reg = MLPRegressor(max_iter=3)
    with pytest.raises(ValueError, match="non-finite"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, np.arange(20.0))
    with pytest.raises(NotFittedError):
        reg.predict(X)


def test_refused_refit_keeps_the_fitted_classes(digits):
    X, y = digits
    clf = quiet(MLPClassifier((5,), max_iter=2).fit, X, y)
    with pytest.raises(ValueError, match="Negative"):
        clf.fit(X, y + 10, sample_weight=-np.ones(len(y)))
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert set(np.unique(clf.predict(X))) <= set(range(10))


def test_assigning_coefs_of_another_shape_is_refused(digits):
    X, y = digits
    clf = quiet(MLPClassifier((5,), max_iter=2).fit, X, y)
    with pytest.raises(ValueError, match="fitted shapes"):
        clf.coefs_ = [np.zeros((64, 4)), np.zeros((4, 10))]
    clf.coefs_ = [c * 0 for c in clf.coefs_]  # same shapes: accepted, and used
    assert np.allclose(clf.predict_proba(X), clf.predict_proba(X)[0])


def test_assigning_one_layer_changes_the_model_as_in_sklearn(backend, digits):
    """``coefs_[i] = W`` writes into scikit-learn's own list; here the list is built on
    access, and the assignment must still reach the model."""
    import pickle

    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    X, y = digits
    ours = quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, backend.asarray(X), backend.asarray(y))
    theirs = quiet(SkMLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    rng = np.random.RandomState(1)
    W, b = rng.normal(size=(5, 10)), rng.normal(size=5)
    for est, convert in ((ours, backend.asarray), (theirs, np.asarray)):
        est.coefs_[1] = convert(W)
        est.intercepts_[0] = convert(b)
        est.intercepts_[1:] = [convert(np.zeros(10))]
    rtol = 1e-5 if backend.dtype_name == "float32" else 1e-10
    np.testing.assert_allclose(backend.numpy(ours.coefs_[1]), W, rtol=rtol)
    np.testing.assert_allclose(backend.numpy(ours.predict_proba(backend.asarray(X))), theirs.predict_proba(X),
                               rtol=rtol, atol=1e-12)
    before = backend.numpy(ours.predict_proba(backend.asarray(X)))
    with pytest.raises(ValueError, match="fitted shapes"):
        ours.coefs_[0] = backend.asarray(np.zeros((3, 5)))
    with pytest.raises(TypeError, match="one array per layer"):
        ours.coefs_.append(backend.asarray(W))
    np.testing.assert_array_equal(backend.numpy(ours.predict_proba(backend.asarray(X))), before)  # untouched
    assert type(pickle.loads(pickle.dumps(ours.coefs_))) is list


def test_parameter_lists_stay_the_models_until_the_next_fit(backend, digits):
    """As scikit-learn's lists: every list fetched since the last fit is the model's (an
    assignment through one leaves the others' views live), and a fit detaches them."""
    X, y = digits
    est = quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, backend.asarray(X), backend.asarray(y))
    first, second = est.coefs_, est.coefs_
    ones, zeros = np.ones((64, 5)), np.zeros((5, 10))
    first[0] = backend.asarray(ones)
    second[1] = backend.asarray(zeros)  # must not write second's stale layer 0 back
    np.testing.assert_array_equal(backend.numpy(est.coefs_[0]), ones)
    np.testing.assert_array_equal(backend.numpy(est.coefs_[1]), zeros)
    intercepts = est.intercepts_
    intercepts[:] = (backend.asarray(np.full(b.shape, 0.5)) for b in intercepts)  # a generator, consumed once
    assert len(intercepts) == 2
    np.testing.assert_array_equal(backend.numpy(est.intercepts_[1]), 0.5)
    if backend.xp is None:  # NumPy views: in-place edits after an assignment still reach the model
        first[1][:] = 3.0
        np.testing.assert_array_equal(est.coefs_[1], 3.0)
    held = est.coefs_
    quiet(est.set_params(hidden_layer_sizes=(7,)).fit, backend.asarray(X), backend.asarray(y))
    held[0] = backend.asarray(np.zeros((3, 3)))  # the old model's list: no check, no effect
    assert backend.numpy(est.coefs_[0]).shape == (64, 7) and np.abs(backend.numpy(est.coefs_[0])).sum() > 0


def test_unsigned_labels_predict_on_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    X = torch.asarray(rng.rand(60, 3))
    for dtype in (np.uint16, np.uint32, np.uint64):
        clf = quiet(MLPClassifier((3,), max_iter=2).fit, X, (np.arange(60) % 3).astype(dtype))
        assert set(np.unique(clf.predict(X).numpy())) <= {0, 1, 2}


@pytest.mark.parametrize("first, second", [(False, True), (True, False)])
def test_switching_early_stopping_between_warm_fits(digits, first, second):
    X, y = digits
    clf = quiet(MLPClassifier((5,), max_iter=3, warm_start=True, early_stopping=first, random_state=0).fit, X, y)
    clf.set_params(early_stopping=second)
    quiet(clf.fit, X, y)
    assert len(clf.loss_curve_) == 6
    assert (clf.validation_scores_ is not None) == second


def test_read_only_numpy_on_torch_backend_is_quiet(digits):
    pytest.importorskip("torch")
    X, y = digits
    X = X.copy()
    X.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((4,), max_iter=2, backend="torch").fit(X, y)


def test_non_integer_layer_sizes_are_refused(digits):
    X, y = digits
    with pytest.raises(TypeError, match="integers"):
        MLPClassifier((3.5,)).fit(X, y)


# --------------------------------------------------------------------------- finiteness check memory


def test_finite_check_of_device_input_needs_no_copy_of_X(monkeypatch):
    import tracemalloc

    import array_api_strict as xps

    from anymlp.estimators import _validation

    X = xps.asarray(np.random.default_rng(0).random((4000, 500)))  # 16 MB
    tracemalloc.start()
    try:
        _validation.check_finite(X, xp=xps, what="X")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # isfinite(X) alone would take 2 MB of booleans (torch: 1.7x X)


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_finite_check_finds_a_bad_value_in_any_block(monkeypatch, bad, message):
    import array_api_strict as xps

    from anymlp.estimators import _validation

    monkeypatch.setattr(_validation, "FINITE_CHECK_BLOCK", 50)  # 5 rows per block
    X = np.ones((40, 10), dtype=np.float32)
    X[33, 7] = bad
    with pytest.raises(ValueError, match=f"Input X contains {message}"):
        _validation.check_finite(xps.asarray(X), xp=xps, what="X")


def test_finite_check_accepts_huge_values_whose_sum_overflows():
    import array_api_strict as xps

    from anymlp.estimators import _validation

    X = np.full((10, 3), np.finfo(np.float32).max, dtype=np.float32)
    _validation.check_finite(xps.asarray(X), xp=xps, what="X")  # sum is inf, every value finite


@pytest.mark.parametrize("sizes", [True, (True,), (5, np.True_)])
def test_booleans_are_not_layer_sizes(digits, sizes):
    X, y = digits
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold integers"):
        MLPClassifier(hidden_layer_sizes=sizes, max_iter=1).fit(X, y)


class _Hooked:
    def on_epoch_end(self, estimator, record):
        pass


@pytest.mark.parametrize("callbacks, match", [
    ([1], r"callbacks\[0\] = 1 has none of the callback methods"),
    ([_Hooked(), "log"], r"callbacks\[1\] = 'log' has none"),
    ([_Hooked], r"callbacks\[0\] is the class _Hooked; pass an instance"),
])
def test_what_cannot_be_a_callback_is_refused_before_training(digits, callbacks, match):
    X, y = digits
    clf = MLPClassifier(max_iter=1, callbacks=callbacks)
    with pytest.raises(TypeError, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")
    with pytest.raises(TypeError, match=match):
        clf.partial_fit(X, y, classes=np.unique(y))


class _Checkpoints:
    """Pickles the model in each on_epoch_end, as a checkpointing callback does."""

    def __init__(self):
        self.saved = {}

    def on_epoch_end(self, estimator, record):
        import pickle

        self.saved[record["epoch"]] = pickle.dumps(estimator)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_model_pickled_in_on_epoch_end_is_the_model_of_that_epoch(digits, solver):
    import pickle

    X, y = digits
    params = dict(hidden_layer_sizes=(10,), solver=solver, random_state=0, n_iter_no_change=100)
    checkpoints = _Checkpoints()
    quiet(MLPClassifier(max_iter=4, callbacks=[checkpoints], **params).fit, X, y)
    saved = pickle.loads(checkpoints.saved[2])
    stopped = quiet(MLPClassifier(max_iter=2, **params).fit, X, y)
    assert saved.n_iter_ == 2 and saved.loss_ == stopped.loss_
    for name in ("t_", "loss_curve_", "best_loss_"):
        assert repr(getattr(saved, name, None)) == repr(getattr(stopped, name, None)), name
    for a, b in zip(saved.coefs_ + saved.intercepts_, stopped.coefs_ + stopped.intercepts_):
        assert np.array_equal(a, b)


class _AtFitEnd:
    """Keeps a pickle of the model as on_fit_end sees it."""

    def on_fit_end(self, estimator):
        import pickle

        self.saved = pickle.dumps(estimator)


@pytest.mark.parametrize("case", ["early stopping", "interrupted"])
def test_on_fit_end_sees_the_model_the_fit_keeps(digits, case):
    import pickle

    X, y = digits
    params = dict(hidden_layer_sizes=(10,), batch_size=32, random_state=0, max_iter=6)
    callbacks = [_AtFitEnd()]
    if case == "early stopping":
        params.update(early_stopping=True, n_iter_no_change=2, tol=0.5)  # stops early, keeps the best
    else:
        callbacks.insert(0, InterruptAt(4))
    model = quiet(MLPClassifier(callbacks=callbacks, **params).fit, X, y)
    seen = pickle.loads(callbacks[-1].saved)
    assert seen.n_iter_ == model.n_iter_ and repr(seen.loss_curve_) == repr(model.loss_curve_)
    for a, b in zip(seen.coefs_ + seen.intercepts_, model.coefs_ + model.intercepts_):
        assert np.array_equal(a, b)


class _FailsAtIteration2:
    def on_epoch_end(self, estimator, record):
        if record["epoch"] == 2:
            raise RuntimeError("a callback's own bug")


def test_an_lbfgs_callback_error_leaves_the_model_as_before_the_fit(digits):
    X, y = digits
    model = quiet(MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=3, random_state=0).fit, X, y)
    before = [a.copy() for a in model.coefs_ + model.intercepts_]
    n_iter, loss = model.n_iter_, model.loss_
    model.set_params(warm_start=True, callbacks=[_FailsAtIteration2()])
    with pytest.raises(RuntimeError, match="a callback's own bug"):
        model.fit(X, y)
    assert model.n_iter_ == n_iter and model.loss_ == loss
    for a, b in zip(model.coefs_ + model.intercepts_, before):
        assert np.array_equal(a, b)


class _Events:
    def __init__(self):
        self.events = []

    def on_fit_begin(self, estimator, *, max_epochs, n_batches):
        self.max_epochs = max_epochs
        self.events.append(("fit_begin", n_batches))

    def on_epoch_begin(self, estimator, *, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, estimator, *, batch, n_batches):
        self.events.append(("batch_end", batch, n_batches))

    def on_epoch_end(self, estimator, record):
        self.events.append(("epoch_end", record["epoch"]))

    def on_fit_end(self, estimator):
        self.events.append(("fit_end",))


@pytest.mark.parametrize("max_iter", [1, 6])
def test_lbfgs_calls_every_hook_in_order(digits, max_iter):
    """An L-BFGS iteration is an epoch of one full batch: each begins (at its first
    evaluation), ends its batch and ends, as a stochastic epoch does."""
    X, y = digits
    recorder = _Events()
    model = quiet(MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=max_iter, random_state=0,
                                callbacks=[recorder]).fit, X, y)
    expected = [("fit_begin", 1)]
    for epoch in range(1, model.n_iter_ + 1):
        expected += [("epoch_begin", epoch), ("batch_end", 1, 1), ("epoch_end", epoch)]
    assert model.n_iter_ == max_iter and recorder.events == expected + [("fit_end",)]


def test_partial_fit_announces_one_epoch(digits):
    """A progress bar reads max_epochs: partial_fit runs one epoch whatever max_iter says."""
    X, y = digits
    recorder = _Events()
    model = MLPClassifier(hidden_layer_sizes=(10,), max_iter=50, random_state=0, callbacks=[recorder])
    model.partial_fit(X, y, classes=np.unique(y))
    assert recorder.max_epochs == 1 and [e for e in recorder.events if e[0] == "epoch_end"] == [("epoch_end", 1)]
