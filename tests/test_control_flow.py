"""Control flow the parity tests do not reach: stopping, restoring, warnings, messages.

Each test here was written for a one-line change to anymlp that the rest of the suite let
through (mutation testing); the oracle is scikit-learn where it has the behaviour, else an
invariant of anymlp's own contract.
"""

import os
import warnings

import numpy as np
import pytest
import scipy.optimize
from sklearn import neural_network as sk
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import anymlp
from anymlp import Callback, MLPClassifier, MLPRegressor
from anymlp._backend import to_host


def _separable(n=120):
    X, y = make_classification(n_samples=n, n_features=6, n_informative=4, class_sep=3.0, random_state=0)
    return StandardScaler().fit_transform(X), y


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _assert_same_coefs(ours, theirs, atol=1e-10):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


# ---------------------------------------------------------------- early stopping


def test_a_warm_early_stopping_fit_that_cannot_improve_keeps_its_own_weights():
    """The first fit reaches validation accuracy 1.0, so the warm one never improves on it:
    scikit-learn ends on the warm fit's last weights, not on the first fit's best."""
    X, y = _separable()
    params = dict(hidden_layer_sizes=(8,), early_stopping=True, warm_start=True, max_iter=30,
                  n_iter_no_change=50, random_state=0, learning_rate_init=0.01)
    fitted = []
    for cls in (MLPClassifier, sk.MLPClassifier):
        est = _quiet(cls(**params).fit, X, y)
        assert est.best_validation_score_ == 1.0  # the scenario
        _quiet(est.set_params(max_iter=3).fit, X, y)
        fitted.append(est)
    _assert_same_coefs(*fitted)


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_no_finite_validation_score_restores_the_initial_weights(kind, monkeypatch):
    """No epoch's score beats -inf (all NaN): scikit-learn keeps its initial weights."""
    X, y = (_separable() if kind == "clf" else make_regression(n_samples=120, n_features=6, random_state=0))
    ours_cls, theirs_cls = (MLPClassifier, sk.MLPClassifier) if kind == "clf" else (MLPRegressor, sk.MLPRegressor)
    monkeypatch.setattr(ours_cls, "_score_predictions", lambda self, *args: np.nan)
    monkeypatch.setattr(theirs_cls, "_score", lambda self, *args, **kwargs: np.nan)
    params = dict(hidden_layer_sizes=(5,), early_stopping=True, max_iter=4, random_state=0)
    ours, theirs = (_quiet(cls(**params).fit, X, y) for cls in (ours_cls, theirs_cls))
    _assert_same_coefs(ours, theirs)


def test_validation_score_ties_count_as_no_improvement_as_in_sklearn():
    """With tol=0 and accuracy on 12 rows, equal scores are common: a tie is no improvement."""
    X, y = _separable(120)
    params = dict(hidden_layer_sizes=(4,), early_stopping=True, tol=0.0, n_iter_no_change=2, max_iter=60,
                  random_state=1, learning_rate_init=0.003)
    ours, theirs = (_quiet(cls(**params).fit, X, y) for cls in (MLPClassifier, sk.MLPClassifier))
    assert len(set(theirs.validation_scores_)) < len(theirs.validation_scores_)  # ties happened
    assert ours.n_iter_ == theirs.n_iter_ and ours.validation_scores_ == theirs.validation_scores_


def test_two_label_multilabel_early_stopping_splits_as_sklearn():
    """scikit-learn stratifies single-output problems only: two labels are not one output."""
    X, Y = make_multilabel_classification(n_samples=120, n_features=6, n_classes=2, random_state=0)
    params = dict(hidden_layer_sizes=(5,), early_stopping=True, max_iter=5, random_state=0)
    ours, theirs = (_quiet(cls(**params).fit, X / X.max(), Y) for cls in (MLPClassifier, sk.MLPClassifier))
    assert ours.validation_scores_ == theirs.validation_scores_
    _assert_same_coefs(ours, theirs)


# ---------------------------------------------------------------- interruption and divergence


class _InterruptAt(Callback):
    def __init__(self, epoch):
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, estimator, epoch):
        self.current = epoch

    def on_batch_end(self, estimator, batch, n_batches):
        if self.current == self.epoch and batch == 2:
            raise KeyboardInterrupt


def test_ctrl_c_restores_the_optimizer_with_the_weights():
    """Interrupted in epoch 3: weights *and* Adam's moments are epoch 2's, so a later warm
    fit continues from a consistent state."""
    X, y = _separable()
    params = dict(hidden_layer_sizes=(6,), batch_size=20, random_state=0)
    interrupted = _quiet(MLPClassifier(max_iter=5, callbacks=[_InterruptAt(3)], **params).fit, X, y)
    two_epochs = _quiet(MLPClassifier(max_iter=2, **params).fit, X, y)
    _assert_same_coefs(interrupted, two_epochs, atol=0)
    a, b = interrupted._optimizer.state, two_epochs._optimizer.state
    assert a.t == b.t
    np.testing.assert_array_equal(a.m, b.m)
    np.testing.assert_array_equal(a.v, b.v)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_minibatch_whose_weights_sum_to_zero_is_named(library):
    """scikit-learn raises ZeroDivisionError there; anymlp says what happened (not divergence,
    not "large values"), a first fit leaves the estimator unfitted, and a partial_fit keeps
    the model it had."""
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    y = y / 100
    w = np.ones(40)
    w[7] = 0.0
    if library == "torch":
        torch = pytest.importorskip("torch")
        X, y, w = torch.asarray(X), torch.asarray(y), torch.asarray(w)
    params = dict(hidden_layer_sizes=(4,), batch_size=1, max_iter=3, random_state=0)
    with pytest.raises(ZeroDivisionError):
        _quiet(sk.MLPRegressor(**params).fit, np.asarray(X), np.asarray(y), sample_weight=np.asarray(w))
    model = MLPRegressor(**params)
    with pytest.raises(anymlp.exceptions.ZeroWeightBatchError, match="summed to zero in epoch 1") as error:
        _quiet(model.fit, X, y, sample_weight=w)
    assert isinstance(error.value, ValueError) and isinstance(error.value, ZeroDivisionError)
    assert not hasattr(model, "coefs_")
    # and nothing of the failed fit's history (scikit-learn's unfitted attributes only)
    assert not any(hasattr(model, name) for name in ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_"))
    model = _quiet(MLPRegressor(**params).fit, X, y)
    before = [to_host(a).copy() for a in model.coefs_ + model.intercepts_]
    state = [to_host(a).copy() for a in (model._optimizer.state.m, model._optimizer.state.v)]
    history = (model.t_, list(model.loss_curve_))
    with pytest.raises(ZeroDivisionError, match="keeps the parameters of the last complete epoch"):
        _quiet(model.partial_fit, X, y, sample_weight=w)
    for a, b in zip(model.coefs_ + model.intercepts_, before):
        np.testing.assert_array_equal(to_host(a), b)
    for a, b in zip((model._optimizer.state.m, model._optimizer.state.v), state):
        np.testing.assert_array_equal(to_host(a), b)
    assert (model.t_, model.loss_curve_) == history
    _quiet(model.partial_fit, X, y)
    assert np.isfinite(model.loss_)


def test_a_zero_weight_minibatch_in_an_early_stopping_fit_keeps_the_best_weights(monkeypatch):
    """As after Ctrl-C: the best epoch's weights, and no best-weights snapshot left behind for
    a later warm fit that does not improve to jump back to."""
    import anymlp.training.stochastic as stochastic

    X, y = _separable(200)
    model = _quiet(MLPClassifier((6,), early_stopping=True, warm_start=True, max_iter=2, random_state=0,
                                 learning_rate_init=0.05, n_iter_no_change=100).fit, X, y)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, estimator, record):
            seen.append((record["validation_score"], [np.array(a) for a in estimator.coefs_]))

    real, calls = stochastic.read_epoch_end, []

    def zero_weight_batch_in_epoch_3(*args, **kwargs):
        calls.append(1)
        end = real(*args, **kwargs)
        return stochastic.EpochEnd(end.loss_total, end.theta_finite, len(calls) == 3)

    monkeypatch.setattr(stochastic, "read_epoch_end", zero_weight_batch_in_epoch_3)
    previous_best = model.best_validation_score_
    with pytest.raises(anymlp.exceptions.ZeroWeightBatchError, match="epoch 3"):
        _quiet(model.set_params(max_iter=5, callbacks=[Record()]).fit, X, y)
    assert len(seen) == 2 and model._history.best_theta is None
    best_score, best_weights = max(seen, key=lambda s: s[0])
    kept = best_weights if best_score > previous_best else seen[-1][1]
    for a, b in zip(model.coefs_, kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("hook", ["on_batch_end", "on_epoch_end"])
def test_a_callback_error_leaves_the_last_completed_epoch(solver, hook):
    """The error propagates, and the model it leaves is one model: the weights, optimizer
    state and history of the last completed epoch, as after Ctrl-C (not a half-done epoch
    counted as none, or counted while its weights went)."""
    import copy

    class FailInEpoch2:
        def __init__(self):
            self.epoch = 0

        def on_epoch_begin(self, estimator, *, epoch):
            self.epoch = epoch

        def on_batch_end(self, estimator, *, batch, n_batches):
            if hook == "on_batch_end" and self.epoch == 2 and batch == 4:
                raise RuntimeError("callback failed")

        def on_epoch_end(self, estimator, record):
            if hook == "on_epoch_end" and record["epoch"] == 2:
                raise RuntimeError("callback failed")

    X, y = _separable(300)
    start = _quiet(MLPClassifier((8,), solver=solver, batch_size=30, warm_start=True, max_iter=2,
                                 random_state=0).fit, X, y)
    failed, expected = copy.deepcopy(start), copy.deepcopy(start)
    with pytest.raises(RuntimeError, match="callback failed"):
        _quiet(failed.set_params(max_iter=5, callbacks=[FailInEpoch2()]).fit, X, y)
    _quiet(expected.set_params(max_iter=1).fit, X, y)
    _assert_same_coefs(failed, expected, atol=0)
    assert (failed.n_iter_, failed.t_, failed.loss_curve_) == (expected.n_iter_, expected.t_, expected.loss_curve_)
    for a, b in zip(failed._optimizer.state, expected._optimizer.state):
        np.testing.assert_array_equal(a, b)



class _Checkpoint:
    def __init__(self):
        self.saved = {}

    def on_epoch_end(self, estimator, record):
        import pickle

        self.saved[record["epoch"]] = pickle.dumps(estimator)


_SCHEDULES = [dict(learning_rate="invscaling"),
              dict(learning_rate="adaptive", tol=1e9, n_iter_no_change=1)]  # the rate drops at epoch 3


@pytest.mark.parametrize("schedule", _SCHEDULES, ids=["invscaling", "adaptive"])
def test_a_model_pickled_at_epoch_end_is_that_epochs_model(schedule):
    """The callbacks run after scikit-learn's epoch-end bookkeeping (the invscaling rate,
    adaptive's division by 5): resuming from the pickle is resuming from fit(max_iter=k)."""
    import pickle

    X, y = _separable(300)
    params = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=30, random_state=0, **schedule)
    checkpoint = _Checkpoint()
    _quiet(MLPClassifier(max_iter=4, callbacks=[checkpoint], **params).fit, X, y)
    for epoch in (2, 3):
        resumed = pickle.loads(checkpoint.saved[epoch]).set_params(callbacks=None)
        fitted = _quiet(MLPClassifier(max_iter=epoch, **params).fit, X, y)
        assert resumed._optimizer.schedule.learning_rate == fitted._optimizer.schedule.learning_rate
        assert resumed._no_improvement_count == fitted._no_improvement_count
        resumed.partial_fit(X, y)
        fitted.partial_fit(X, y)
        _assert_same_coefs(resumed, fitted, atol=0)


def test_a_callback_error_takes_back_the_epochs_rate_change():
    """Adaptive divides the rate by 5 at epoch 3's end; a callback failing there leaves the
    model of epoch 2, rate included."""
    class FailAtEpoch3:
        def on_epoch_end(self, estimator, record):
            if record["epoch"] == 3:
                assert estimator._optimizer.schedule.learning_rate == 0.001 / 5  # (the drop happened)
                raise RuntimeError("callback failed")

    X, y = _separable(300)
    params = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=30, random_state=0, **_SCHEDULES[1])
    failed = MLPClassifier(max_iter=4, callbacks=[FailAtEpoch3()], **params)
    with pytest.raises(RuntimeError, match="callback failed"):
        _quiet(failed.fit, X, y)
    expected = _quiet(MLPClassifier(max_iter=2, **params).fit, X, y)
    assert failed.n_iter_ == 2
    assert failed._optimizer.schedule.learning_rate == expected._optimizer.schedule.learning_rate == 0.001

def test_ctrl_c_under_warnings_as_errors_still_keeps_the_last_completed_epoch():
    """The model is handed over before the warning, which an error filter (pytest -W error)
    turns into an exception."""

    class CtrlCInEpoch3:
        epoch = 0

        def on_epoch_begin(self, estimator, *, epoch):
            self.epoch = epoch

        def on_batch_end(self, estimator, *, batch, n_batches):
            if self.epoch == 3 and batch == 2:
                raise KeyboardInterrupt

    X, y = _separable(200)
    params = dict(hidden_layer_sizes=(6,), batch_size=40, random_state=0)
    interrupted = MLPClassifier(**params, max_iter=5, callbacks=[CtrlCInEpoch3()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="Training interrupted by user"):
            interrupted.fit(X, y)
    two_epochs = _quiet(MLPClassifier(**params, max_iter=2).fit, X, y)
    _assert_same_coefs(interrupted, two_epochs, atol=0)
    assert interrupted._optimizer.state.t == two_epochs._optimizer.state.t


def test_weights_gone_to_minus_infinity_are_divergence():
    from anymlp.nn.losses import LossTerms
    from anymlp.training.stochastic import EpochLosses, read_epoch_end

    one_batch = EpochLosses(np)
    one_batch.add(LossTerms(np.asarray([1.0]), 1.0, 1), 1)
    diverged = read_epoch_end(one_batch, np.array([1.0, -np.inf]), xp=np)
    assert (diverged.loss_total, diverged.theta_finite) == (1.0, False)
    finite = read_epoch_end(one_batch, np.array([1.0, -2.0]), xp=np)
    assert (finite.loss_total, finite.theta_finite, finite.zero_weight_batch) == (1.0, True, False)


def test_lbfgs_ending_at_a_non_finite_loss_is_no_model():
    """Poisson outputs overflowing on unscaled X: refused, and the estimator stays unfitted."""
    X, _ = make_regression(n_samples=60, n_features=3, random_state=0)
    y = np.random.RandomState(0).poisson(1.0, 60).astype(float)
    est = MLPRegressor(loss="poisson", solver="lbfgs", hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    with pytest.raises(ValueError, match="non-finite"):
        _quiet(est.fit, X * 1e4, y)
    assert not hasattr(est, "_theta")


# ---------------------------------------------------------------- callbacks


class _Batches(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, estimator, batch, n_batches):
        self.seen.append((batch, n_batches))


def test_batches_are_numbered_from_one_to_n_batches():
    X, y = _separable(100)
    recorder = _Batches()
    _quiet(MLPClassifier((4,), batch_size=30, max_iter=2, callbacks=[recorder]).fit, X, y)
    assert recorder.seen == [(b, 4) for b in (1, 2, 3, 4)] * 2


# ---------------------------------------------------------------- L-BFGS


@pytest.mark.parametrize("status", [1, 2])
def test_lbfgs_warns_on_any_stop_short_of_convergence(status):
    """scikit-learn warns for every status but 0: too many iterations (1) and an abnormal
    line search (2) alike."""
    from anymlp.training.lbfgs import _check_result

    result = scipy.optimize.OptimizeResult(status=status, nit=3, message="ABNORMAL")
    with pytest.warns(ConvergenceWarning, match=f"status={status}"):
        _check_result(result, max_iter=200)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_warnings_come_from_anymlp_on_every_path(solver):
    """As scikit-learn's come from sklearn: ``filterwarnings(module="anymlp")`` silences them
    whether the fit is direct or inside a Pipeline or cross-validation."""
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    X, y = _separable()
    paths = [lambda est: est.fit(X, y), lambda est: make_pipeline(StandardScaler(), est).fit(X, y),
             lambda est: cross_val_score(est, X, y, cv=2)]
    for run in paths:
        with pytest.warns(ConvergenceWarning) as record:
            run(MLPClassifier((4,), solver=solver, max_iter=2))
        assert all(w.filename.startswith(os.path.dirname(anymlp.__file__)) for w in record)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", category=ConvergenceWarning, module="anymlp")
            run(MLPClassifier((4,), solver=solver, max_iter=2))


def test_streamed_lbfgs_objective_weights_chunks_by_their_sample_weight():
    """The chunked objective (data over the device budget) equals the one-piece objective,
    with sample weights spread unevenly over the chunks."""
    from anymlp.nn import Architecture, Layout, loss_and_grad
    from anymlp.training.lbfgs import streamed_loss_and_grad
    from anymlp.training.stochastic import TrainingData

    rng = np.random.RandomState(0)
    arch = Architecture(Layout((4, 5, 3)), "tanh", "log_loss")
    theta = rng.normal(size=arch.layout.n_params)
    X, Y = rng.normal(size=(23, 4)), np.eye(3)[rng.randint(0, 3, 23)]
    # The second chunk weighs nothing: its own average would be 0/0.
    sw = np.r_[np.full(7, 5.0), np.zeros(7), rng.uniform(0.1, 1.0, 9)]
    data = TrainingData(X, Y, sw, batch_to_device=lambda a: a)
    loss, grad = streamed_loss_and_grad(theta, data, arch, 0.3, rows=7, xp=np)
    expected_loss, expected_grad = loss_and_grad(theta, X, Y, sw, arch, 0.3, xp=np)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- messages and warnings


def test_poisson_refuses_slightly_negative_targets():
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    y = np.abs(y)
    y[3] = -1e-3
    for cls in (MLPRegressor,):
        with pytest.raises(ValueError, match="y >= 0"):
            cls(loss="poisson", max_iter=1).fit(X, y)


def test_early_stopping_without_a_validation_set_says_so():
    X, y = _separable()
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        MLPClassifier(early_stopping=True, validation_fraction=0.0, max_iter=2).fit(X, y)


def test_a_warm_fit_with_another_number_of_outputs_says_so():
    X, y = make_regression(n_samples=60, n_features=3, n_targets=2, random_state=0)
    est = _quiet(MLPRegressor(hidden_layer_sizes=(4,), warm_start=True, max_iter=2).fit, X, y[:, 0])
    with pytest.raises(ValueError, match="outputs"):
        est.fit(X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_batch_of_exactly_all_rows_is_not_clipped(solver):
    X, y = _separable(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # checked first: it is a UserWarning too
        MLPClassifier((4,), solver=solver, batch_size=50, max_iter=3).fit(X, y)


# ---------------------------------------------------------------- prediction and backends


def test_predict_chunks_keep_their_activations_within_the_budget(monkeypatch):
    """Per row a chunk holds the widest layer twice (pre-activation and activation) and
    every layer's output; the rows per chunk must keep that within the budget."""
    import anymlp.estimators.base as base

    X, y = _separable()
    est = _quiet(MLPClassifier((300, 40), max_iter=1).fit, X, y)
    budget = 2**20
    monkeypatch.setattr(base, "PREDICT_CHUNK_BYTES", budget)
    rows = est._chunk_rows(np.dtype(np.float64))
    assert rows * (2 * 300 + 300 + 40 + 1) * 8 <= budget < (rows + 1) * (2 * 300 + 300 + 40 + 1) * 8


def test_device_cpu_with_numpy_input_stays_on_numpy():
    from anymlp._backend import resolve_backend

    assert resolve_backend(np.ones((2, 2)), device="cpu").name == "numpy"
    with anymlp.config_context(device="cpu"):
        assert resolve_backend(np.ones((2, 2))).name == "numpy"
