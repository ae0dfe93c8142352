"""anymlp against its oracle, scikit-learn 1.9.1, on NumPy float64.

Same data, same hyperparameters, same ``random_state``: the two estimators
must draw the same initial weights, the same validation split and the same
shuffles, and then do the same arithmetic, so every fitted attribute is
scikit-learn's to the last bit. Both run on one BLAS thread here: OpenBLAS's
products round differently with two threads, so scikit-learn's own results
depend on the thread count, and anymlp picks one thread for small problems.
The deliberate differences: the multi-output squared-error loss, which anymlp
sums over outputs (scikit-learn averages it in ``loss_`` while its gradient is
that of the sum, scikit-learn #8349), and CSC input, trained as CSR.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import anymlp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 0.0  # loss curves, float64: the same bits
ATOL = 0.0  # weights and predictions, float64: the same bits


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


# ---------------------------------------------------------------------------
# data: small, so the whole file stays fast


def _digits(n=150):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _binary(n=120):
    X, y = make_classification(n_samples=n, n_features=8, n_informative=5, random_state=1)
    return StandardScaler().fit_transform(X), y


def _multiclass(n=150):
    X, y = make_classification(n_samples=n, n_features=10, n_informative=6, n_classes=3, random_state=2)
    return StandardScaler().fit_transform(X), y


def _multilabel(n=120):
    X, Y = make_multilabel_classification(n_samples=n, n_features=8, n_classes=4, random_state=3)
    return X / X.max(), Y


def _strings(n=150):
    X, y = _multiclass(n)
    return X, np.array(["ant", "bee", "cat"])[y]


def _regression(n=120, n_targets=1):
    X, y = make_regression(n_samples=n, n_features=6, n_informative=4, n_targets=n_targets, noise=0.5,
                           random_state=4)
    return StandardScaler().fit_transform(X), y / np.std(y, axis=0)


def _poisson(n=120):
    rng = np.random.RandomState(5)
    X = rng.normal(size=(n, 5))
    mu = np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1] + 0.5)
    return X, rng.poisson(mu).astype(np.float64)


TASKS = {
    "binary": ("clf", _binary),
    "multiclass": ("clf", _multiclass),
    "multilabel": ("clf", _multilabel),
    "strings": ("clf", _strings),
    "regression": ("reg", _regression),
    "poisson": ("reg", _poisson),
}


def _classes(kind):
    return (anymlp.MLPClassifier, sk.MLPClassifier) if kind == "clf" else (anymlp.MLPRegressor, sk.MLPRegressor)


def _pair(kind, **params):
    ours, ref = _classes(kind)
    return ours(**params), ref(**params)


def _fit_pair(kind, X, y, fit_params=None, **params):
    ours, ref = _pair(kind, **params)
    fit_params = fit_params or {}
    ours.fit(X, y, **fit_params)
    ref.fit(X, y, **fit_params)
    return ours, ref


# ---------------------------------------------------------------------------
# comparisons


def assert_same_weights(ours, ref, atol=ATOL, rtol=0.0):
    assert len(ours.coefs_) == len(ref.coefs_)
    for a, b in zip(ours.coefs_, ref.coefs_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    assert len(ours.intercepts_) == len(ref.intercepts_)
    for a, b in zip(ours.intercepts_, ref.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def assert_same_history(ours, ref, rtol=RTOL, loss_scale=1.0):
    """sgd/adam bookkeeping; ``loss_scale`` is anymlp's loss / scikit-learn's loss."""
    assert ours.n_iter_ == ref.n_iter_
    assert ours.t_ == ref.t_
    assert len(ours.loss_curve_) == len(ref.loss_curve_)
    np.testing.assert_allclose(ours.loss_curve_, np.asarray(ref.loss_curve_) * loss_scale, rtol=rtol)
    np.testing.assert_allclose(ours.loss_, ref.loss_ * loss_scale, rtol=rtol)
    if ref.best_loss_ is None:
        assert ours.best_loss_ is None
    else:
        np.testing.assert_allclose(ours.best_loss_, ref.best_loss_ * loss_scale, rtol=rtol)
    if ref.validation_scores_ is None:
        assert ours.validation_scores_ is None
        assert ours.best_validation_score_ is None
    else:
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, rtol=rtol, atol=0)
        np.testing.assert_allclose(ours.best_validation_score_, ref.best_validation_score_, rtol=rtol)


def assert_same_predictions(ours, ref, X, atol=ATOL):
    p_ours, p_ref = np.asarray(ours.predict(X)), np.asarray(ref.predict(X))
    assert p_ours.shape == p_ref.shape
    if p_ref.dtype.kind == "f":
        np.testing.assert_allclose(p_ours, p_ref, rtol=0, atol=atol)
    else:
        assert p_ours.dtype.kind == p_ref.dtype.kind
        np.testing.assert_array_equal(p_ours, p_ref)
    if hasattr(ref, "predict_proba"):
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=0, atol=atol)
    assert ours.score(X, p_ref) == ref.score(X, p_ref)


def assert_full_parity(ours, ref, X, **history_kw):
    assert ours.n_layers_ == ref.n_layers_
    assert ours.n_outputs_ == ref.n_outputs_
    assert ours.out_activation_ == ref.out_activation_
    assert_same_weights(ours, ref)
    if ref.solver == "lbfgs":
        assert ours.n_iter_ == ref.n_iter_
        assert ours.t_ == ref.t_ == 0
        np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=RTOL)
    else:
        assert_same_history(ours, ref, **history_kw)
    assert_same_predictions(ours, ref, X)


# ---------------------------------------------------------------------------
# solvers x activations on one multiclass problem

SOLVERS = {
    "sgd-constant-nomomentum": dict(solver="sgd", learning_rate="constant", momentum=0.0, learning_rate_init=0.1),
    "sgd-constant-nesterov": dict(solver="sgd", learning_rate="constant", momentum=0.9, nesterovs_momentum=True,
                                  learning_rate_init=0.05),
    "sgd-constant-momentum": dict(solver="sgd", learning_rate="constant", momentum=0.9, nesterovs_momentum=False,
                                  learning_rate_init=0.05),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, power_t=0.25),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2, n_iter_no_change=1, tol=1e-2),
    "adam": dict(solver="adam", learning_rate_init=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-7),
    "lbfgs": dict(solver="lbfgs", max_iter=15),
}


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_solver_activation_parity(solver, activation):
    X, y = _digits()
    params = dict(hidden_layer_sizes=(12, 7), activation=activation, alpha=1e-3, batch_size=32, max_iter=12,
                  random_state=0)
    params.update(SOLVERS[solver])
    ours, ref = _fit_pair("clf", X, y, **params)
    assert_full_parity(ours, ref, X)
    if solver != "lbfgs":
        assert ours._optimizer.learning_rate == pytest.approx(ref._optimizer.learning_rate, rel=1e-12)


def test_adaptive_learning_rate_is_divided_like_sklearn():
    """Enough no-improvement triggers to divide the rate several times and then stop."""
    X, y = _digits(100)
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, hidden_layer_sizes=(8,),
                  n_iter_no_change=0 + 1, tol=10.0, max_iter=60, random_state=1)
    ours, ref = _fit_pair("clf", X, y, **params)
    assert ref._optimizer.learning_rate < 0.05 / 5**5  # the scenario does exercise the schedule
    assert ref.n_iter_ < 60  # ...and stops on "learning rate too small"
    assert ours._optimizer.learning_rate == pytest.approx(ref._optimizer.learning_rate, rel=1e-12)
    assert_full_parity(ours, ref, X)


# ---------------------------------------------------------------------------
# tasks x solvers


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", list(TASKS))
def test_task_parity(task, solver):
    kind, make = TASKS[task]
    X, y = make()
    params = dict(hidden_layer_sizes=(10,), activation="tanh", solver=solver, max_iter=10, random_state=7,
                  batch_size=25, learning_rate_init=0.01)
    if task == "poisson":
        params.update(loss="poisson", learning_rate_init=0.005)
    ours, ref = _fit_pair(kind, X, y, **params)
    assert_full_parity(ours, ref, X)
    if task == "strings":
        assert ours.predict(X).dtype == ref.predict(X).dtype


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_multioutput_regression_loss_is_summed(solver, early_stopping, alpha):
    """Same weights and predictions; anymlp's data loss is n_outputs times scikit-learn's.

    The L2 penalty is added once to the summed loss (the objective scikit-learn's
    gradient belongs to), so the exact factor n_outputs on ``loss_curve_`` holds
    for ``alpha=0``; with ``alpha>0`` only the weights can be compared.
    """
    X, Y = _regression(n_targets=3)
    max_iter = 12
    params = dict(hidden_layer_sizes=(9,), solver=solver, max_iter=max_iter, random_state=3, batch_size=20,
                  learning_rate_init=0.01, n_iter_no_change=max_iter + 1, early_stopping=early_stopping,
                  alpha=alpha)
    ours, ref = _fit_pair("reg", X, Y, **params)
    assert ours.n_outputs_ == ref.n_outputs_ == 3
    assert ours.n_iter_ == ref.n_iter_ == max_iter
    assert_same_weights(ours, ref)
    assert_same_predictions(ours, ref, X)
    if alpha == 0.0:  # scikit-learn's mean over 3 outputs, times 3, is the sum up to rounding
        assert_same_history(ours, ref, loss_scale=3.0, rtol=1e-15)
    else:
        # summed data loss + one penalty lies strictly between 1x and 3x scikit-learn's mean + penalty
        ratio = np.asarray(ours.loss_curve_) / np.asarray(ref.loss_curve_)
        assert np.all(ratio > 1.0) and np.all(ratio < 3.0)


def test_multioutput_regression_lbfgs_predicts_shape():
    """No scikit-learn comparison here (its L-BFGS objective is inconsistent); shapes only."""
    X, Y = _regression(n_targets=2)
    ours = anymlp.MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=20, random_state=0).fit(X, Y)
    assert ours.predict(X).shape == Y.shape
    assert ours.n_outputs_ == 2


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_single_output_loss_not_rescaled(task):
    """The summed squared error only differs for several outputs: one output matches exactly."""
    kind, make = TASKS[task]
    X, y = make()
    ours, ref = _fit_pair(kind, X, y, solver="lbfgs", hidden_layer_sizes=(4,), max_iter=30, random_state=2)
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=RTOL)


# ---------------------------------------------------------------------------
# shuffle, early stopping, sample_weight


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_shuffle_early_stopping_parity(task, early_stopping, shuffle, solver):
    kind, make = TASKS[task]
    X, y = make(200)
    params = dict(hidden_layer_sizes=(10,), solver=solver, shuffle=shuffle, early_stopping=early_stopping,
                  validation_fraction=0.2, n_iter_no_change=3, tol=1e-3, max_iter=25, random_state=11,
                  batch_size=30, learning_rate_init=0.02)
    ours, ref = _fit_pair(kind, X, y, **params)
    assert_full_parity(ours, ref, X)


def test_early_stopping_string_labels_parity():
    X, y = _strings(200)
    params = dict(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.25, max_iter=15,
                  random_state=0, learning_rate_init=0.02)
    ours, ref = _fit_pair("clf", X, y, **params)
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression", "poisson"])
def test_sample_weight_parity(task, solver, early_stopping):
    kind, make = TASKS[task]
    X, y = make(150)
    sw = np.random.RandomState(0).uniform(0.1, 3.0, size=X.shape[0])
    sw[::7] = 0.0
    params = dict(hidden_layer_sizes=(6,), solver=solver, early_stopping=early_stopping, max_iter=10,
                  random_state=5, batch_size=40, learning_rate_init=0.01, alpha=0.01)
    if task == "poisson":
        params["loss"] = "poisson"
    ours, ref = _fit_pair(kind, X, y, fit_params={"sample_weight": sw}, **params)
    assert_full_parity(ours, ref, X)
    # and the weights really matter
    plain = _classes(kind)[0](**params).fit(X, y)
    assert not np.allclose(plain.coefs_[0], ours.coefs_[0])


def test_integer_sample_weight_equals_repetition_for_lbfgs():
    """A weight of 2 is a duplicated row for the full-batch objective, in both libraries."""
    X, y = _binary(60)
    sw = np.ones(X.shape[0])
    sw[:10] = 2
    X_rep, y_rep = np.vstack([X, X[:10]]), np.concatenate([y, y[:10]])
    params = dict(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=20, random_state=0, alpha=0.0)
    weighted = anymlp.MLPClassifier(**params).fit(X, y, sample_weight=sw)
    repeated = anymlp.MLPClassifier(**params).fit(X_rep, y_rep)
    ref = sk.MLPClassifier(**params).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(weighted.loss_, ref.loss_, rtol=RTOL)
    np.testing.assert_allclose(weighted.loss_, repeated.loss_, rtol=1e-6)


# ---------------------------------------------------------------------------
# warm_start and partial_fit


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_warm_start_parity(kind, solver, early_stopping):
    X, y = _multiclass(160) if kind == "clf" else _regression(160)
    params = dict(hidden_layer_sizes=(7,), solver=solver, warm_start=True, max_iter=6, random_state=2,
                  learning_rate_init=0.02, early_stopping=early_stopping, n_iter_no_change=20)
    ours, ref = _fit_pair(kind, X, y, **params)
    first_curve = list(ours.loss_curve_) if solver != "lbfgs" else None
    ours.set_params(max_iter=8)
    ref.set_params(max_iter=8)
    ours.fit(X, y)
    ref.fit(X, y)
    assert_full_parity(ours, ref, X)
    if solver != "lbfgs":
        assert ours.n_iter_ == 8
        assert ours.loss_curve_[: len(first_curve)] == first_curve  # accumulated, not restarted
        assert len(ours.loss_curve_) == len(first_curve) + 8
    if solver != "lbfgs" and early_stopping:
        assert len(ours.validation_scores_) == len(first_curve) + 8


def _warm_fit_that_never_improves(cls):
    """A warm ES fit whose validation score never beats the first fit's best."""
    X, y = _multiclass(160)
    est = cls(hidden_layer_sizes=(7,), solver="adam", warm_start=True, max_iter=6, random_state=2,
              learning_rate_init=0.02, early_stopping=True, n_iter_no_change=2)
    est.fit(X, y)
    best_before = [c.copy() for c in est.coefs_]
    scores_before = len(est.validation_scores_)
    est.set_params(max_iter=4)
    est.fit(X, y)
    assert max(est.validation_scores_[scores_before:]) <= est.best_validation_score_  # scenario check
    return X, est, best_before


def test_warm_start_never_improving_keeps_last_weights_in_sklearn():
    """scikit-learn: after an ES fit, ``coefs_`` *is* ``_best_coefs`` and the next warm fit
    updates those arrays in place, so a warm fit that never improves ends on its last
    weights, not on the old best ones."""
    X, ref, best_before = _warm_fit_that_never_improves(sk.MLPClassifier)
    assert not np.allclose(ref.coefs_[0], best_before[0])


def test_warm_start_never_improving_parity():
    X, ours, _ = _warm_fit_that_never_improves(anymlp.MLPClassifier)
    _, ref, _ = _warm_fit_that_never_improves(sk.MLPClassifier)
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_classifier_sequence(solver):
    X, y = _multiclass(180)
    classes = np.unique(y)
    params = dict(hidden_layer_sizes=(8,), solver=solver, random_state=3, batch_size=25, learning_rate_init=0.05)
    ours, ref = _pair("clf", **params)
    chunks = [slice(0, 60), slice(60, 120), slice(120, 180), slice(0, 180)]
    for i, rows in enumerate(chunks):
        kw = {"classes": classes} if i == 0 else {}
        ours.partial_fit(X[rows], y[rows], **kw)
        ref.partial_fit(X[rows], y[rows], **kw)
        assert ours.n_iter_ == ref.n_iter_ == 1
        assert_same_weights(ours, ref)
    # later calls may hold a subset of the classes
    sub = y != classes[0]
    ours.partial_fit(X[sub], y[sub])
    ref.partial_fit(X[sub], y[sub])
    assert_full_parity(ours, ref, X)


def test_partial_fit_first_call_subset_of_classes():
    X, y = _multiclass(150)
    classes = np.unique(y)
    first = y != classes[-1]
    ours, ref = _pair("clf", hidden_layer_sizes=(5,), solver="sgd", random_state=0, learning_rate_init=0.1)
    ours.partial_fit(X[first], y[first], classes=classes)
    ref.partial_fit(X[first], y[first], classes=classes)
    ours.partial_fit(X, y)
    ref.partial_fit(X, y)
    assert_full_parity(ours, ref, X)


def test_partial_fit_multilabel_parity():
    X, Y = _multilabel()
    ours, ref = _pair("clf", hidden_layer_sizes=(6,), solver="adam", random_state=0, learning_rate_init=0.05)
    for i in range(3):
        kw = {"classes": np.arange(Y.shape[1])} if i == 0 else {}
        ours.partial_fit(X, Y, **kw)
        ref.partial_fit(X, Y, **kw)
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_regressor_with_weights_parity(solver):
    X, y = _regression(150)
    sw = np.linspace(0.5, 2.0, X.shape[0])
    ours, ref = _pair("reg", hidden_layer_sizes=(6,), solver=solver, random_state=4, batch_size=32,
                      learning_rate_init=0.01)
    for rows in (slice(0, 75), slice(75, 150), slice(None)):
        ours.partial_fit(X[rows], y[rows], sample_weight=sw[rows])
        ref.partial_fit(X[rows], y[rows], sample_weight=sw[rows])
    assert_full_parity(ours, ref, X)


def test_partial_fit_after_fit_parity():
    X, y = _binary()
    ours, ref = _fit_pair("clf", X, y, hidden_layer_sizes=(5,), solver="sgd", max_iter=5, random_state=1)
    ours.partial_fit(X, y)
    ref.partial_fit(X, y)
    assert_full_parity(ours, ref, X)


# ---------------------------------------------------------------------------
# architectures


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("hidden", [(), 6, [5, 4, 3]])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_hidden_layer_sizes_parity(kind, hidden, solver):
    X, y = _multiclass() if kind == "clf" else _regression()
    ours, ref = _fit_pair(kind, X, y, hidden_layer_sizes=hidden, solver=solver, max_iter=8, random_state=9,
                          learning_rate_init=0.01)
    expected_layers = 2 + (0 if hidden == () else 1 if isinstance(hidden, int) else len(hidden))
    assert ours.n_layers_ == expected_layers
    assert_full_parity(ours, ref, X)


def test_logistic_activation_init_factor():
    """Glorot bound uses factor 2 for logistic: the initial weights must match (max_iter tiny)."""
    X, y = _binary()
    ours, ref = _fit_pair("clf", X, y, solver="sgd", activation="logistic", hidden_layer_sizes=(30,),
                          learning_rate_init=1e-12, momentum=0.0, max_iter=1, random_state=0)
    assert_same_weights(ours, ref)


# ---------------------------------------------------------------------------
# L-BFGS limits


@pytest.mark.parametrize("max_iter, max_fun", [(1, 15000), (3, 15000), (50, 4), (50, 1)])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_lbfgs_limits_parity(kind, max_iter, max_fun):
    X, y = _multiclass() if kind == "clf" else _regression()
    params = dict(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=max_iter, max_fun=max_fun, random_state=0)
    ours, ref = _fit_pair(kind, X, y, **params)
    assert ours.n_iter_ == ref.n_iter_ <= max_iter
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_long_lbfgs_runs_stay_on_scikit_learns_path(task):
    """Hundreds of L-BFGS iterations: its line search magnifies a last-bit difference in the
    loss (once 0.06 apart in predictions on diabetes), so the loss is scikit-learn's to the bit:
    column means then their sum, the layers' dot products added in order, SciPy's xlogy and
    expit."""
    from sklearn.datasets import load_diabetes

    if task == "regression":
        X, y = load_diabetes(return_X_y=True)
        y = y / 100
    else:
        X, y = _binary(200) if task == "binary" else _multiclass(200)
    kind = "reg" if task == "regression" else "clf"
    ours, ref = _fit_pair(kind, X, y, solver="lbfgs", hidden_layer_sizes=(20,), max_iter=300, tol=0.0, random_state=0)
    assert ref.n_iter_ > 100
    assert_full_parity(ours, ref, X)


def test_lbfgs_converges_on_tol_like_sklearn():
    X, y = _binary(60)
    params = dict(solver="lbfgs", hidden_layer_sizes=(3,), tol=1e-2, max_iter=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours, ref = _fit_pair("clf", X, y, **params)
    assert ours.n_iter_ == ref.n_iter_ < 500
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("seed", range(60))
def test_random_configurations_match_bit_for_bit(seed):
    """Hyperparameters drawn at random across tasks, solvers, activations, depths, schedules,
    batch sizes, early stopping and sample weights: the combinations the tests above do not
    name one by one. Steps small enough that neither library diverges."""
    rng = np.random.RandomState(seed)
    task = list(TASKS)[rng.randint(len(TASKS))]
    kind, make = TASKS[task]
    X, y = make()
    solver = ["sgd", "adam", "lbfgs"][rng.randint(3)]
    params = dict(
        solver=solver, activation=["identity", "logistic", "tanh", "relu"][rng.randint(4)],
        hidden_layer_sizes=[(5,), (7, 3), (), (4, 4, 4)][rng.randint(4)], alpha=[0.0, 1e-4, 0.3][rng.randint(3)],
        batch_size=[7, 32, "auto", 500][rng.randint(4)], max_iter=int(rng.randint(1, 25)),
        random_state=int(rng.randint(100)), shuffle=bool(rng.randint(2)),
        early_stopping=solver != "lbfgs" and task != "multilabel" and bool(rng.randint(2)),
        learning_rate=["constant", "invscaling", "adaptive"][rng.randint(3)], momentum=[0.0, 0.9][rng.randint(2)],
        nesterovs_momentum=bool(rng.randint(2)), tol=[1e-4, 0.0, 1e-2][rng.randint(3)],
        n_iter_no_change=int(rng.randint(1, 10)), learning_rate_init=[0.001, 0.01][rng.randint(2)],
    )
    if task == "poisson":
        params["loss"] = "poisson"
    sample_weight = rng.uniform(0.2, 2.0, len(y)) if rng.randint(3) == 0 else None
    fitted, warned = [], []
    for est in _pair(kind, **params):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted.append(est.fit(X, y, sample_weight=sample_weight))
        warned.append([(w.category, str(w.message)) for w in caught])
    assert warned[0] == warned[1]
    assert_full_parity(*fitted, X)


# ---------------------------------------------------------------------------
# dtypes and input formats


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_float32_stochastic_parity(kind, solver):
    X, y = _multiclass() if kind == "clf" else _regression()
    X = X.astype(np.float32)
    ours, ref = _fit_pair(kind, X, y, solver=solver, hidden_layer_sizes=(8,), max_iter=8, random_state=0,
                          learning_rate_init=0.01)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
    pred = ours.predict_proba(X) if kind == "clf" else ours.predict(X)
    ref_pred = ref.predict_proba(X) if kind == "clf" else ref.predict(X)
    assert pred.dtype == ref_pred.dtype == np.float32
    np.testing.assert_allclose(pred, ref_pred, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_float32_lbfgs_keeps_dtype_and_fits_as_well(kind):
    """Deliberate improvement: float32 weights on L-BFGS (scikit-learn returns float64)."""
    X, y = _multiclass() if kind == "clf" else _regression()
    X32 = X.astype(np.float32)
    ours, ref = _fit_pair(kind, X32, y, solver="lbfgs", hidden_layer_sizes=(8,), max_iter=40, random_state=0)
    assert all(a.dtype == np.float32 for a in ours.coefs_ + ours.intercepts_)
    assert ref.coefs_[0].dtype == np.float64  # what we improve on
    out = ours.predict_proba(X32) if kind == "clf" else ours.predict(X32)
    assert out.dtype == np.float32
    # same starting point, float32 evaluation: a comparable objective at the end
    assert ours.loss_ == pytest.approx(ref.loss_, rel=0.05, abs=1e-3)
    assert ours.score(X32, y) >= ref.score(X32, y) - 0.05


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_parity(fmt, solver):
    X, y = _digits(120)
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    ours, ref = _fit_pair("clf", Xs, y, solver=solver, hidden_layer_sizes=(8,), max_iter=8, random_state=0)
    if fmt == "csr":
        assert_full_parity(ours, ref, Xs)
    else:  # trained as CSR (fast row batches), so X.T @ delta adds in another order
        assert_same_weights(ours, ref, atol=1e-15)
        assert ours.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-15)
        assert_same_predictions(ours, ref, Xs, atol=1e-15)


def test_integer_X_is_float64_like_sklearn():
    X, y = _digits(100)
    Xi = (X * 16).astype(np.int64)
    ours, ref = _fit_pair("clf", Xi, y, hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    assert ours.coefs_[0].dtype == ref.coefs_[0].dtype == np.float64
    assert_full_parity(ours, ref, Xi)


# ---------------------------------------------------------------------------
# randomness


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_same_random_state_twice_is_identical(solver):
    X, y = _multiclass()
    params = dict(solver=solver, hidden_layer_sizes=(6,), max_iter=6, random_state=42, early_stopping=True)
    a = anymlp.MLPClassifier(**params).fit(X, y)
    b = anymlp.MLPClassifier(**params).fit(X, y)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    c = anymlp.MLPClassifier(**{**params, "random_state": 43}).fit(X, y)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_refit_resets_like_sklearn():
    """A second plain fit starts over from the same draws (RandomState re-created per fit)."""
    X, y = _binary()
    ours = anymlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    ours.fit(X, y)
    first = [c.copy() for c in ours.coefs_]
    ours.fit(X, y)
    for a, b in zip(first, ours.coefs_):
        np.testing.assert_array_equal(a, b)
    assert len(ours.loss_curve_) == ours.n_iter_


def test_random_state_instance_parity():
    """A RandomState object is consumed in the same order: init, split, shuffles."""
    X, y = _multiclass()
    params = dict(hidden_layer_sizes=(6,), solver="sgd", max_iter=5, early_stopping=True)
    ours = anymlp.MLPClassifier(random_state=np.random.RandomState(123), **params).fit(X, y)
    ref = sk.MLPClassifier(random_state=np.random.RandomState(123), **params).fit(X, y)
    assert_full_parity(ours, ref, X)
    # the instance is advanced: a second fit with it differs from the first, in both
    ours.fit(X, y)
    ref.fit(X, y)
    assert_full_parity(ours, ref, X)


def test_int_random_state_reuses_permutation_in_partial_fit():
    """Documented parity quirk: each partial_fit re-creates RandomState(seed) and shuffles alike."""
    X, y = _regression(100)
    ours, ref = _pair("reg", hidden_layer_sizes=(4,), solver="sgd", random_state=0, batch_size=10,
                      learning_rate_init=0.01)
    for _ in range(3):
        ours.partial_fit(X, y)
        ref.partial_fit(X, y)
    assert_full_parity(ours, ref, X)


# ---------------------------------------------------------------------------
# odd targets and inputs


@pytest.mark.parametrize(
    "target",
    ["one-class", "one-class-str", "bool", "float-labels", "lists"],
)
def test_odd_classification_targets_parity(target):
    X, y = _multiclass(90)
    y = {
        "one-class": np.zeros_like(y),
        "one-class-str": np.full(y.shape, "only"),
        "bool": y == 1,
        "float-labels": y.astype(float) * 2.0,
        "lists": y.tolist(),
    }[target]
    X_in = X.tolist() if target == "lists" else X
    ours, ref = _fit_pair("clf", X_in, y, hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    assert_full_parity(ours, ref, X)
    assert ours.predict(X).dtype == ref.predict(X).dtype


def test_multilabel_early_stopping_parity():
    """Multilabel: not stratified, scored by subset accuracy."""
    X, Y = _multilabel(150)
    ours, ref = _fit_pair("clf", X, Y, hidden_layer_sizes=(6,), early_stopping=True, validation_fraction=0.2,
                          max_iter=12, random_state=1, learning_rate_init=0.02)
    assert_full_parity(ours, ref, X)


def test_n_iter_no_change_inf_parity():
    X, y = _binary()
    ours, ref = _fit_pair("clf", X, y, hidden_layer_sizes=(4,), n_iter_no_change=np.inf, tol=10.0, max_iter=15,
                          random_state=0)
    assert ours.n_iter_ == 15
    assert_full_parity(ours, ref, X)


def test_batch_size_clipped_after_early_stopping_split_parity():
    X, y = _multiclass(100)  # 90 training rows after the split
    params = dict(hidden_layer_sizes=(4,), early_stopping=True, batch_size=95, max_iter=4, random_state=0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ours, ref = _fit_pair("clf", X, y, **params)
    assert sum("batch_size" in str(w.message) for w in rec) == 2  # one each
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_keyboard_interrupt_between_epochs_parity(monkeypatch, early_stopping):
    """Ctrl-C at the start of epoch k+1 keeps a usable model, as scikit-learn does."""
    X, y = _multiclass(120)
    k, batch_size = 3, 40
    n_train = X.shape[0] - (int(np.ceil(0.2 * X.shape[0])) if early_stopping else 0)
    updates_per_epoch = int(np.ceil(n_train / batch_size))
    params = dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=batch_size, max_iter=10, random_state=0,
                  early_stopping=early_stopping, validation_fraction=0.2)

    from sklearn.neural_network import _stochastic_optimizers

    calls = {"n": 0}
    original = _stochastic_optimizers.BaseOptimizer.update_params

    def interrupting_update(self, params_, grads):
        calls["n"] += 1
        if calls["n"] == k * updates_per_epoch + 1:
            raise KeyboardInterrupt
        return original(self, params_, grads)

    monkeypatch.setattr(_stochastic_optimizers.BaseOptimizer, "update_params", interrupting_update)
    with pytest.warns(UserWarning, match="Training interrupted by user.") as ref_warn:
        ref = sk.MLPClassifier(**params).fit(X, y)

    class Interrupt:
        def on_epoch_begin(self, estimator, *, epoch):
            if epoch == k + 1:
                raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="Training interrupted by user.") as our_warn:
        ours = anymlp.MLPClassifier(callbacks=[Interrupt()], **params).fit(X, y)
    assert ref.n_iter_ == k
    assert str(our_warn[0].message).startswith(str(ref_warn[0].message))
    assert_full_parity(ours, ref, X)


@pytest.mark.parametrize("labels", ["int", "uint8", "str", "binary str"])
def test_partial_fit_stream_parity(labels):
    """Streaming code passes ``classes`` on every call; labels of any integer or string type."""
    X, y = _multiclass(180)
    y = {"int": y, "uint8": y.astype(np.uint8), "str": np.array(["a", "b", "c", "d", "e", "f"])[y % 6],
         "binary str": np.where(y % 2, "yes", "no")}[labels]
    classes = np.unique(y)
    ours, ref = _pair("clf", hidden_layer_sizes=(6,), solver="adam", random_state=0, learning_rate_init=0.05)
    for rows in (slice(0, 60), slice(60, 120), slice(120, 180), slice(0, 30)):
        ours.partial_fit(X[rows], y[rows], classes=classes)
        ref.partial_fit(X[rows], y[rows], classes=classes)
    assert_full_parity(ours, ref, X)


def test_activation_and_output_activation_are_read_at_each_call():
    """scikit-learn reads ``activation`` and ``out_activation_`` on every call: a changed
    activation applies to later predictions and partial fits, and ``out_activation_ =
    "identity"`` (a known way to read logits) makes predict_proba return the raw outputs."""
    X, y = _multiclass(150)
    ours, ref = _pair("clf", hidden_layer_sizes=(6,), solver="sgd", random_state=0, learning_rate_init=0.05)
    for est in (ours, ref):
        est.partial_fit(X, y, classes=np.unique(y))
        est.set_params(activation="tanh")
        est.partial_fit(X, y)
    assert_full_parity(ours, ref, X)
    for est in (ours, ref):
        est.out_activation_ = "identity"
    logits = ours.predict_proba(X)
    np.testing.assert_allclose(logits, ref.predict_proba(X), rtol=RTOL, atol=ATOL)
    assert (logits < 0).any() and not np.allclose(logits.sum(axis=1), 1)


def test_sparse_multilabel_targets_predict_sparse():
    X, Y = _multilabel()
    ours, ref = _fit_pair("clf", X, sp.csr_matrix(Y), hidden_layer_sizes=(6,), max_iter=20, random_state=0)
    assert_same_weights(ours, ref)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=RTOL, atol=ATOL)
    predicted, expected = ours.predict(X), ref.predict(X)
    assert type(predicted) is type(expected) and predicted.dtype == expected.dtype
    np.testing.assert_array_equal(predicted.toarray(), expected.toarray())


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_multilabel_targets_with_early_stopping(fmt):
    """The held-out rows of a sparse indicator matrix are scored as scikit-learn scores them."""
    X, Y = _multilabel(400)
    ours, ref = _fit_pair("clf", X, sp.csr_matrix(Y).asformat(fmt), hidden_layer_sizes=(20,), max_iter=40,
                          learning_rate_init=0.02, random_state=0, early_stopping=True, n_iter_no_change=100)
    assert_same_weights(ours, ref)
    assert len(set(ref.validation_scores_)) > 3  # scores that move, so the held-out rows matter
    assert ours.validation_scores_ == pytest.approx(ref.validation_scores_)
    assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_)


@pytest.mark.parametrize("kind", ["clf", "reg"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_a_sparse_one_column_target_gets_sklearns_type_error(kind, fmt):
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    y = sp.csr_matrix(y.astype(float)).T.asformat(fmt)
    est = anymlp.MLPClassifier if kind == "clf" else anymlp.MLPRegressor
    ref = sk.MLPClassifier if kind == "clf" else sk.MLPRegressor
    model = est(hidden_layer_sizes=(3,), max_iter=2)
    with pytest.raises(TypeError, match="Sparse data was passed for y") as ours:
        model.fit(X, y)
    with pytest.raises(TypeError) as theirs:
        ref(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)
    assert str(ours.value) == str(theirs.value)
    assert not hasattr(model, "n_outputs_")  # refused before anything was set up


def test_multilabel_partial_fit_checks_the_labels_against_classes():
    X = np.random.RandomState(0).randn(20, 3)
    Y = (X > 0).astype(int)  # three labels
    model = anymlp.MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    with pytest.raises(ValueError) as ours:
        model.partial_fit(X, Y, classes=[0, 1])
    with pytest.raises(ValueError) as theirs:
        sk.MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, Y, classes=[0, 1])
    assert str(ours.value) == str(theirs.value)
    model.partial_fit(X, Y, classes=[0, 1, 2])  # the refused call left no trace
    ref = sk.MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, Y, classes=[0, 1, 2])
    assert_same_weights(model, ref)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_optimizer_state_reads_as_sklearns(solver):
    """Code written for scikit-learn's optimizers reads ``_optimizer.ms``/``vs``/``t`` (Adam) and
    ``velocities`` (SGD): per-parameter lists in coefs_ + intercepts_ order, here views of the
    flat state, with scikit-learn's values (float64: to the bit), after a pickle too."""
    import pickle

    X, y = make_classification(n_samples=90, n_features=5, n_informative=3, n_classes=3, random_state=0)
    ours, ref = _fit_pair("clf", X, y, hidden_layer_sizes=(4, 3), solver=solver, max_iter=4, random_state=0)
    names = ("ms", "vs") if solver == "adam" else ("velocities",)
    for model in (ours, pickle.loads(pickle.dumps(ours))):
        for name in names:
            mine, theirs = getattr(model._optimizer, name), getattr(ref._optimizer, name)
            assert [a.shape for a in mine] == [a.shape for a in theirs]
            for a, b in zip(mine, theirs):
                np.testing.assert_array_equal(a, b)
    if solver == "adam":
        assert ours._optimizer.t == ref._optimizer.t > 0


@pytest.mark.parametrize("n", [1, 7, 200, 60000])
def test_epoch_shuffle_draws_as_sklearn_shuffle(n):
    """The loop's own shuffle of the row order: scikit-learn's order, and the same random
    state left for the next epoch."""
    from sklearn.utils import shuffle

    from anymlp.training.stochastic import shuffled

    order = np.arange(n)[::-1].copy()
    ours, theirs = np.random.RandomState(n), np.random.RandomState(n)
    for _ in range(3):
        np.testing.assert_array_equal(shuffled(order, ours), shuffle(order, random_state=theirs))
    assert ours.randint(2**31) == theirs.randint(2**31)


@pytest.mark.parametrize("labels", ["int", "str", "bool"])
@pytest.mark.parametrize("weighted", [False, True])
def test_validation_accuracy_is_accuracy_score(labels, weighted):
    """Early stopping's per-epoch score skips accuracy_score's target checks; the value must
    be accuracy_score's to the last bit (validation_scores_ and the stopping rule use it)."""
    from sklearn.metrics import accuracy_score

    rng = np.random.RandomState(0)
    for n in (1, 7, 333):
        codes_true, codes_pred = rng.randint(0, 3, n), rng.randint(0, 3, n)
        table = {"int": np.array([-1, 4, 9]), "str": np.array(["ant", "bee", "cat"]),
                 "bool": np.array([False, True, True])}[labels]
        y_true, y_pred = table[codes_true], table[codes_pred]
        weights = rng.uniform(0.1, 3.0, n) if weighted else None
        ours = anymlp.MLPClassifier()._score_predictions(y_true, y_pred, weights)
        expected = accuracy_score(y_true, y_pred, sample_weight=weights)
        assert type(ours) is type(expected) and ours == expected
    if weighted:  # all-zero weights: scikit-learn's own message
        with pytest.raises(ValueError, match="at least one non-zero"):
            anymlp.MLPClassifier()._score_predictions(y_true, y_pred, np.zeros(n))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_validation_r2_is_r2_score(dtype, weighted):
    """The regressor's per-epoch early-stopping score skips r2_score's checks; the value must be
    r2_score's to the last bit, constant targets and perfect outputs included."""
    from sklearn.metrics import r2_score

    rng = np.random.RandomState(1)
    for shape in [(2,), (9,), (500,), (50, 3), (2, 1)]:
        y_true = rng.normal(size=shape).astype(dtype)
        cases = [rng.normal(size=shape).astype(dtype), y_true.copy()]
        constant = np.full(shape, 1.5, dtype=dtype)
        weights = rng.uniform(0.1, 3.0, shape[0]).astype(dtype) if weighted else None
        for t, p in [(y_true, c) for c in cases] + [(constant, cases[0]), (constant, constant.copy())]:
            ours = anymlp.MLPRegressor()._score_predictions(t, p, weights)
            expected = r2_score(t, p, sample_weight=weights)
            assert type(ours) is type(expected) and ours == expected, (shape, ours, expected)
    if weighted:  # all-zero weights: scikit-learn's own message
        with pytest.raises(ValueError, match="at least one non-zero"):
            anymlp.MLPRegressor()._score_predictions(y_true, cases[0], np.zeros(shape[0], dtype=dtype))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_float32_sample_weight_beside_float64_X_is_widened_first(solver):
    """A documented difference: scikit-learn keeps float32 weights as they are (so sums them
    in float32); anymlp widens them to X's float64 first. anymlp's fit is scikit-learn's
    given the widened weights, to the bit, and differs from its float32 one only in rounding."""
    X, y = _multiclass(60)
    sw = np.linspace(0.1, 1, 60).astype(np.float32)
    params = dict(hidden_layer_sizes=(7,), solver=solver, random_state=0, max_iter=10)
    ours, ref = _fit_pair("clf", X, y, fit_params={"sample_weight": sw}, **params)
    widened = sk.MLPClassifier(**params).fit(X, y, sample_weight=sw.astype(np.float64))
    assert_same_weights(ours, widened)
    assert_same_weights(ours, ref, atol=1e-6)
