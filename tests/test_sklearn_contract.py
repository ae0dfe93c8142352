"""The scikit-learn experience: signatures, validation, attributes, messages, ecosystem.

Where a behaviour is scikit-learn's, the expected value comes from running
scikit-learn 1.9.1 itself next to anymlp; where anymlp deliberately differs
(see the reference's decision table) the test says so.
"""

from __future__ import annotations

import inspect
import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, UnsetMetadataPassedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import (
    InvalidParameterError,
    generate_invalid_param_val,
    make_constraint,
)

import anymlp

EXTRA_PARAMS = ("backend", "device", "callbacks")
PAIRS = {
    "clf": (anymlp.MLPClassifier, sk.MLPClassifier),
    "reg": (anymlp.MLPRegressor, sk.MLPRegressor),
}
STOCHASTIC = ["sgd", "adam"]


def _binary(n=80):
    X, y = make_classification(n_samples=n, n_features=6, n_informative=4, random_state=0)
    return StandardScaler().fit_transform(X), y


def _multiclass(n=120):
    X, y = load_digits(n_class=4, return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _regression(n=80, n_targets=1):
    X, y = make_regression(n_samples=n, n_features=5, n_targets=n_targets, noise=0.1, random_state=0)
    return StandardScaler().fit_transform(X), y / np.std(y, axis=0)


def _data(kind):
    return _multiclass() if kind == "clf" else _regression()


def _quiet_fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


# ---------------------------------------------------------------------------
# constructor signatures


@pytest.mark.parametrize("kind", list(PAIRS))
def test_signature_matches_sklearn(kind):
    ours, ref = PAIRS[kind]
    ours_params = list(inspect.signature(ours).parameters.values())
    ref_params = list(inspect.signature(ref).parameters.values())
    assert [p.name for p in ours_params[-len(EXTRA_PARAMS):]] == list(EXTRA_PARAMS)
    for p in ours_params[-len(EXTRA_PARAMS):]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None
    head = ours_params[: -len(EXTRA_PARAMS)]
    assert [(p.name, p.kind, p.default) for p in head] == [(p.name, p.kind, p.default) for p in ref_params]
    if kind == "reg":
        assert head[0].name == "loss" and head[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD


@pytest.mark.parametrize("kind", list(PAIRS))
def test_get_params_and_defaults_match_sklearn(kind):
    ours, ref = PAIRS[kind]
    p_ours, p_ref = ours().get_params(), ref().get_params()
    for name in EXTRA_PARAMS:
        assert p_ours.pop(name) is None
    assert p_ours == p_ref


def test_regressor_positional_loss_first():
    ours = anymlp.MLPRegressor("poisson", (5,), "tanh")
    assert (ours.loss, ours.hidden_layer_sizes, ours.activation) == ("poisson", (5,), "tanh")
    X, y = _regression()
    # as in scikit-learn >= 1.7, a tuple in first position is an invalid loss
    with pytest.raises(InvalidParameterError, match="'loss' parameter"):
        anymlp.MLPRegressor((5,)).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'loss' parameter"):
        sk.MLPRegressor((5,)).fit(X, y)
    with pytest.raises(TypeError):
        anymlp.MLPRegressor("squared_error", (5,), "relu", "adam")  # solver is keyword-only


def test_classifier_loss_attribute_not_param():
    est = anymlp.MLPClassifier()
    assert est.loss == sk.MLPClassifier().loss == "log_loss"
    assert "loss" not in est.get_params()


# ---------------------------------------------------------------------------
# parameter validation


def _invalid_values(kind):
    """One generated invalid value per parameter, from scikit-learn's own constraints."""
    _, ref = PAIRS[kind]
    for name, constraints in ref._parameter_constraints.items():
        made = [make_constraint(c) for c in constraints]
        for c in made:
            try:
                value = generate_invalid_param_val(c)
            except NotImplementedError:
                continue
            if any(m.is_satisfied_by(value) for m in made):
                continue
            yield name, value
        # a value of the wrong type altogether
        yield name, object()


INVALID = [(kind, name, value) for kind in PAIRS for name, value in _invalid_values(kind)]


@pytest.mark.parametrize(
    "kind, name, value", INVALID, ids=[f"{k}-{n}-{type(v).__name__}" for k, n, v in INVALID]
)
def test_invalid_parameter_raises_like_sklearn(kind, name, value):
    X, y = _binary(30)
    ours, ref = PAIRS[kind]
    with pytest.raises(InvalidParameterError) as ref_err:
        ref(**{name: value}).fit(X, y)
    est = ours(**{name: value})  # constructing never validates
    with pytest.raises(InvalidParameterError) as our_err:
        est.fit(X, y)
    assert _normalized(str(our_err.value)) == _normalized(str(ref_err.value))


def _normalized(message):
    """Drop object addresses and the (hash-dependent) order of options inside braces."""
    message = re.sub(r" at 0x[0-9a-f]+", "", message)
    return re.sub(r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


@pytest.mark.parametrize(
    "params",
    [
        dict(alpha=-1.0),
        dict(solver="foo"),
        dict(activation="leaky"),
        dict(momentum=2.0),
        dict(momentum=-0.1),
        dict(n_iter_no_change=0),
        dict(learning_rate_init=0.0),
        dict(batch_size=0),
        dict(max_iter=0),
        dict(max_fun=0),
        dict(beta_1=1.0),
        dict(beta_2=1.0),
        dict(epsilon=0.0),
        dict(validation_fraction=1.0),
        dict(learning_rate="optimal"),
        dict(shuffle="yes"),
        dict(tol=-1e-3),
        dict(backend="jax-not-a-backend"),
        dict(callbacks="progress"),
    ],
)
@pytest.mark.parametrize("kind", list(PAIRS))
def test_named_invalid_values(kind, params):
    X, y = _binary(30)
    ours, ref = PAIRS[kind]
    with pytest.raises(InvalidParameterError, match=f"'{next(iter(params))}' parameter"):
        ours(**params).fit(X, y)
    if not set(params) & set(EXTRA_PARAMS):
        with pytest.raises(InvalidParameterError):
            ref(**params).fit(X, y)
    if kind == "clf" and "solver" not in params:  # partial_fit validates too
        with pytest.raises(InvalidParameterError):
            ours(**params).partial_fit(X, y, classes=[0, 1])


def test_invalid_parameter_error_is_value_error():
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)


@pytest.mark.parametrize("hidden", [[0], [3, 0], (5, -1), 0, -2])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_hidden_layer_sizes_not_positive(kind, hidden):
    X, y = _binary(30)
    ours, ref = PAIRS[kind]
    errors = []
    for cls in (ours, ref):
        with pytest.raises(ValueError) as err:
            cls(hidden_layer_sizes=hidden).fit(X, y)
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    if not isinstance(hidden, int):
        assert errors[0] == "hidden_layer_sizes must be > 0, got %s." % list(hidden)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_validation_fraction_zero_with_early_stopping_raises(kind):
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    for cls in (ours, ref):
        with pytest.raises(ValueError):
            cls(early_stopping=True, validation_fraction=0.0, max_iter=2).fit(X, y)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_validation_set_too_small(kind):
    X, y = _binary(10) if kind == "clf" else _regression(10)
    ours, ref = PAIRS[kind]
    messages = []
    for cls in (ours, ref):
        with pytest.raises(ValueError) as err:
            cls(early_stopping=True, validation_fraction=0.1, max_iter=2, random_state=0).fit(X, y)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


# ---------------------------------------------------------------------------
# fitted attributes


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_fitted_attributes_per_solver(kind, solver, early_stopping):
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    params = dict(hidden_layer_sizes=(5, 4), solver=solver, early_stopping=early_stopping, max_iter=5,
                  random_state=0)
    a, b = _quiet_fit(ours(**params), X, y), _quiet_fit(ref(**params), X, y)
    for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert hasattr(a, name) == hasattr(b, name) == (solver != "lbfgs"), name
    for name in ("coefs_", "intercepts_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_", "loss_",
                 "n_features_in_"):
        assert hasattr(a, name), name
    assert a.n_layers_ == b.n_layers_ == 4
    assert a.n_outputs_ == b.n_outputs_
    assert isinstance(a.coefs_, list) and isinstance(a.intercepts_, list)
    assert len(a.coefs_) == len(a.intercepts_) == a.n_layers_ - 1
    assert isinstance(a.n_iter_, int) and isinstance(a.t_, int)
    assert float(a.loss_) == pytest.approx(float(b.loss_), rel=1e-8)
    assert type(a.loss_) is type(b.loss_)
    if solver != "lbfgs":
        for name in ("loss_curve_", "validation_scores_"):
            assert [type(v) for v in getattr(a, name) or []] == [type(v) for v in getattr(b, name) or []], name
        assert type(a.best_loss_) is type(b.best_loss_)
    if solver == "lbfgs":
        assert a.t_ == b.t_ == 0
    elif early_stopping:
        assert a.best_loss_ is None
        assert isinstance(a.validation_scores_, list) and len(a.validation_scores_) == a.n_iter_
        assert a.best_validation_score_ == max(a.validation_scores_)
    else:
        assert a.validation_scores_ is None and a.best_validation_score_ is None
        assert a.best_loss_ == min(a.loss_curve_)
        assert len(a.loss_curve_) == a.n_iter_
        assert a.t_ == a.n_iter_ * X.shape[0]


_LOSS_TARGETS = {
    "float32": lambda rng: rng.rand(60).astype(np.float32),
    "float64": lambda rng: rng.rand(60),
    "int": lambda rng: rng.randint(0, 3, 60),
    "float16": lambda rng: rng.rand(60).astype(np.float16),
    "2-D float32": lambda rng: rng.rand(60, 2).astype(np.float32),
}
_LOSS_WEIGHTS = {"none": None, "float32": np.float32, "float64": np.float64, "scalar": float}


@pytest.mark.parametrize("weights", list(_LOSS_WEIGHTS))
@pytest.mark.parametrize("target", list(_LOSS_TARGETS))
@pytest.mark.parametrize("X_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_the_loss_has_scikit_learns_dtype(solver, X_dtype, target, weights):
    """First fits: loss_, loss_curve_ and best_loss_ are float32 exactly when scikit-learn's are (a float32
    model, float32 targets and weights), so the tol comparison rounds as scikit-learn's."""
    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 4).astype(X_dtype), _LOSS_TARGETS[target](rng)
    kind = _LOSS_WEIGHTS[weights]
    sample_weight = None if kind is None else (1.5 if kind is float else rng.rand(60).astype(kind) + 0.5)
    params = dict(hidden_layer_sizes=(3,), solver=solver, max_iter=3, random_state=0)
    a = _quiet_fit(anymlp.MLPRegressor(**params), X, y, sample_weight=sample_weight)
    b = _quiet_fit(sk.MLPRegressor(**params), X, y, sample_weight=sample_weight)
    assert type(a.loss_) is type(b.loss_)
    if solver != "lbfgs":
        assert [type(v) for v in a.loss_curve_] == [type(v) for v in b.loss_curve_]
        assert type(a.best_loss_) is type(b.best_loss_)
    if type(b.loss_) is np.float32 and solver != "lbfgs" and y.ndim == 1:  # (2-D: see README, the sum over outputs)
        assert a.loss_curve_ == pytest.approx(b.loss_curve_, rel=1e-6)


def test_a_float32_classifier_reports_float64_losses_as_scikit_learn():
    X, y = _binary(60)
    params = dict(hidden_layer_sizes=(3,), max_iter=3, random_state=0)
    a = _quiet_fit(anymlp.MLPClassifier(**params), X.astype(np.float32), y)
    b = _quiet_fit(sk.MLPClassifier(**params), X.astype(np.float32), y)
    assert type(a.loss_) is type(b.loss_)
    assert {type(v) for v in a.loss_curve_} == {type(v) for v in b.loss_curve_} == {np.float64}


def test_a_partial_fit_sequence_keeps_each_calls_loss_dtype():
    """As scikit-learn's: each call's loss follows that call's targets."""
    rng = np.random.RandomState(0)
    X = rng.rand(40, 3).astype(np.float32)
    curves = []
    for cls in (anymlp.MLPRegressor, sk.MLPRegressor):
        model = cls(hidden_layer_sizes=(3,), random_state=0)
        model.partial_fit(X, rng.rand(40).astype(np.float32))
        model.partial_fit(X, rng.rand(40))
        curves.append([type(v) for v in model.loss_curve_])
    assert curves[0] == curves[1] == [np.float32, np.float64]


def test_lbfgs_after_stochastic_drops_stochastic_attributes():
    X, y = _binary()
    est = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(3,), solver="adam", max_iter=3), X, y)
    assert hasattr(est, "loss_curve_")
    _quiet_fit(est.set_params(solver="lbfgs"), X, y)
    assert not hasattr(est, "loss_curve_") and not hasattr(est, "best_loss_")


def test_stochastic_warm_fit_after_lbfgs_starts_its_own_history():
    """The curve the L-BFGS fit dropped does not come back with the next sgd/adam fit."""
    X, y = _binary()
    est = _quiet_fit(anymlp.MLPClassifier((3,), solver="adam", max_iter=3, warm_start=True, random_state=0), X, y)
    _quiet_fit(est.set_params(solver="lbfgs", max_iter=5), X, y)
    _quiet_fit(est.set_params(solver="adam", max_iter=2), X, y)
    assert len(est.loss_curve_) == est.n_iter_ == 2
    assert est.t_ == 2 * X.shape[0]
    # partial_fit after L-BFGS: a fresh Adam too, not the moments of the weights before it
    _quiet_fit(est.set_params(solver="lbfgs", max_iter=5), X, y)
    est.set_params(solver="adam").partial_fit(X, y)
    assert est._optimizer.state.t == 1 and est.t_ == X.shape[0]


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
@pytest.mark.parametrize("hidden", [(4,), (3, 3)])  # another width, another depth
def test_continuing_with_another_architecture_is_refused(solver, how, hidden):
    """scikit-learn fails deep inside on some of these and silently trains the old network on
    the others; anymlp says what happened and leaves the model as it was."""
    if how == "partial_fit" and solver == "lbfgs":
        pytest.skip("no partial_fit for lbfgs")
    X, y = _binary()
    est = _quiet_fit(anymlp.MLPClassifier((3,), solver=solver, max_iter=3, warm_start=True, random_state=0), X, y)
    before = [w.copy() for w in est.coefs_]
    est.set_params(hidden_layer_sizes=hidden)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(.*fitted network has hidden layers \(3,\)"):
        est.fit(X, y) if how == "warm_start" else est.partial_fit(X, y)
    for a, b in zip(est.coefs_, before):
        np.testing.assert_array_equal(a, b)
    _quiet_fit(est.set_params(warm_start=False), X, y)  # what the message suggests
    assert [w.shape[1] for w in est.coefs_[:-1]] == list(hidden)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_regressor_refuses_string_targets(method):
    """scikit-learn fails inside its loss (UFuncTypeError); anymlp says to convert them."""
    X, y = _regression()
    est = anymlp.MLPRegressor(solver="sgd", max_iter=2)
    with pytest.raises(ValueError, match="bytes/strings"):
        getattr(est, method)(X, y.astype(str))
    with pytest.raises(ValueError, match="bytes/strings"):
        getattr(est, method)(X, y.astype(bytes))


def test_continuing_a_regressor_with_another_loss_is_refused():
    X, y = _regression()
    est = anymlp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, warm_start=True, random_state=0)
    _quiet_fit(est, X, np.abs(y))
    est.set_params(loss="poisson")
    with pytest.raises(ValueError, match="loss='poisson', but the network was fitted with loss='squared_error'"):
        est.fit(X, np.abs(y))
    with pytest.raises(ValueError, match="loss='poisson'"):
        est.partial_fit(X, np.abs(y))
    # And back: a Poisson network (exp output) does not continue as a squared-error one.
    poisson = _quiet_fit(anymlp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, warm_start=True, random_state=0,
                                             loss="poisson"), X, np.abs(y))
    poisson.set_params(loss="squared_error")
    with pytest.raises(ValueError, match="loss='squared_error', but the network was fitted with loss='poisson'"):
        poisson.fit(X, np.abs(y))


def _multilabel():
    X, _ = _binary(60)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0], axis=1).astype(int)
    return X, Y


@pytest.mark.parametrize(
    "make, expected", [(_binary, "logistic"), (_multiclass, "softmax"), (_multilabel, "logistic")],
    ids=["binary", "multiclass", "multilabel"],
)
def test_out_activation_classifier(make, expected):
    X, y = make()
    a = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y)
    b = _quiet_fit(sk.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y)
    assert a.out_activation_ == b.out_activation_ == expected
    assert a.n_outputs_ == b.n_outputs_
    assert isinstance(a.classes_, np.ndarray)
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("loss, expected", [("squared_error", "identity"), ("poisson", "exp")])
def test_out_activation_regressor(loss, expected):
    X, y = _regression()
    y = np.abs(y)
    a = _quiet_fit(anymlp.MLPRegressor(loss=loss, hidden_layer_sizes=(3,), max_iter=2), X, y)
    b = _quiet_fit(sk.MLPRegressor(loss=loss, hidden_layer_sizes=(3,), max_iter=2), X, y)
    assert a.out_activation_ == b.out_activation_ == expected


def test_classes_string_labels_numpy():
    X, y = _multiclass()
    labels = np.array(["zero", "one", "two", "three"])[y]
    est = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, labels)
    assert isinstance(est.classes_, np.ndarray)
    np.testing.assert_array_equal(est.classes_, np.unique(labels))
    assert set(est.predict(X)) <= set(labels)


def test_partial_fit_accumulates_t_and_n_iter_is_one():
    X, y = _multiclass()
    est = anymlp.MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", random_state=0)
    for i in range(3):
        est.partial_fit(X, y, classes=np.unique(y) if i == 0 else None)
        assert est.n_iter_ == 1
        assert est.t_ == (i + 1) * X.shape[0]
        assert len(est.loss_curve_) == i + 1


def test_n_iter_reset_each_fit_t_accumulates_with_warm_start():
    X, y = _regression()
    for cls in PAIRS["reg"]:
        est = _quiet_fit(cls(hidden_layer_sizes=(4,), max_iter=3, warm_start=True, random_state=0), X, y)
        _quiet_fit(est.set_params(max_iter=2), X, y)
        assert est.n_iter_ == 2
        assert est.t_ == 5 * X.shape[0]
        assert len(est.loss_curve_) == 5


# ---------------------------------------------------------------------------
# verbose output


def _stdout_of(capsys, est, X, y, method="fit", **kw):
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        getattr(est, method)(X, y, **kw)
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", max_iter=8),
        dict(solver="adam", max_iter=8),
        dict(solver="adam", max_iter=40, tol=0.5, n_iter_no_change=2),  # training-loss stop
        dict(solver="sgd", early_stopping=True, max_iter=8),
        dict(solver="adam", early_stopping=True, max_iter=40, tol=0.5, n_iter_no_change=2),  # validation stop
        dict(solver="sgd", learning_rate="adaptive", tol=1.0, n_iter_no_change=1, max_iter=60),
        dict(solver="sgd", learning_rate="adaptive", early_stopping=True, tol=1.0, n_iter_no_change=1,
             max_iter=60),
    ],
    ids=["sgd", "adam", "adam-stop", "sgd-es", "adam-es-stop", "sgd-adaptive", "sgd-adaptive-es"],
)
@pytest.mark.parametrize("kind", list(PAIRS))
def test_verbose_output_identical_to_sklearn(capsys, kind, params):
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    params = dict(hidden_layer_sizes=(6,), verbose=True, random_state=0, learning_rate_init=0.01, **params)
    out_ours = _stdout_of(capsys, ours(**params), X, y)
    out_ref = _stdout_of(capsys, ref(**params), X, y)
    assert out_ref.startswith("Iteration 1, loss = ")
    assert out_ours == out_ref
    if "tol" in params:
        assert "Stopping." in out_ref
    if params.get("learning_rate") == "adaptive":
        assert "Setting learning rate to" in out_ref and "Learning rate too small. Stopping." in out_ref


def test_verbose_partial_fit_identical(capsys):
    X, y = _multiclass()
    outs = []
    for cls in PAIRS["clf"]:
        est = cls(hidden_layer_sizes=(4,), verbose=True, random_state=0)
        outs.append(_stdout_of(capsys, est, X, y, method="partial_fit", classes=np.unique(y))
                    + _stdout_of(capsys, est, X, y, method="partial_fit"))
    assert outs[0] == outs[1]
    assert outs[0].count("Iteration 1, loss") == 2


@pytest.mark.parametrize("kind", list(PAIRS))
def test_verbose_lbfgs_prints_one_line_per_iteration(capsys, kind):
    """Deliberate improvement: scikit-learn (scipy >= 1.15) is silent for L-BFGS."""
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    params = dict(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=7, random_state=0, verbose=True)
    out_ref = _stdout_of(capsys, ref(**params), X, y)
    est = ours(**params)
    out_ours = _stdout_of(capsys, est, X, y)
    assert out_ref == ""
    lines = out_ours.splitlines()
    assert len(lines) == est.n_iter_ == 7
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(r"Iteration %d, loss = \d+\.\d{8}" % i, line), line
    assert lines[-1] == "Iteration 7, loss = %.8f" % est.loss_
    losses = [float(line.rsplit("=", 1)[1]) for line in lines]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))  # L-BFGS iterates descend
    assert _stdout_of(capsys, ours(**{**params, "verbose": False}), X, y) == ""


def test_not_verbose_is_silent(capsys):
    X, y = _binary()
    for solver in ("sgd", "adam"):
        assert _stdout_of(capsys, anymlp.MLPClassifier(solver=solver, max_iter=3), X, y) == ""


# ---------------------------------------------------------------------------
# warnings


def _warnings_of(fn, category=Warning):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in rec if issubclass(w.category, category)]


@pytest.mark.parametrize(
    "params",
    [dict(solver="sgd", max_iter=3), dict(solver="adam", max_iter=2), dict(solver="lbfgs", max_iter=2),
     dict(solver="lbfgs", max_iter=100, max_fun=3), dict(solver="adam", max_iter=3, early_stopping=True)],
    ids=["sgd", "adam", "lbfgs-maxiter", "lbfgs-maxfun", "adam-es"],
)
@pytest.mark.parametrize("kind", list(PAIRS))
def test_convergence_warning_text_matches_sklearn(kind, params):
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    params = dict(hidden_layer_sizes=(5,), random_state=0, **params)
    w_ours = _warnings_of(lambda: ours(**params).fit(X, y), ConvergenceWarning)
    w_ref = _warnings_of(lambda: ref(**params).fit(X, y), ConvergenceWarning)
    assert len(w_ref) == 1
    assert w_ours == w_ref
    if params["solver"] != "lbfgs":
        assert w_ours[0] == (
            "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't converged yet."
            % params["max_iter"]
        )


def test_no_convergence_warning_when_converged():
    X, y = _binary()
    params = dict(hidden_layer_sizes=(5,), random_state=0, solver="adam", tol=1.0, n_iter_no_change=1,
                  max_iter=50)
    assert _warnings_of(lambda: anymlp.MLPClassifier(**params).fit(X, y), ConvergenceWarning) == []


@pytest.mark.parametrize("solver", STOCHASTIC)
@pytest.mark.parametrize("kind", list(PAIRS))
def test_no_convergence_warning_from_partial_fit(kind, solver):
    X, y = _data(kind)
    est = PAIRS[kind][0](hidden_layer_sizes=(4,), solver=solver, max_iter=1)
    kw = {"classes": np.unique(y)} if kind == "clf" else {}
    assert _warnings_of(lambda: est.partial_fit(X, y, **kw), ConvergenceWarning) == []
    assert _warnings_of(lambda: est.partial_fit(X, y), ConvergenceWarning) == []


@pytest.mark.parametrize("kind", list(PAIRS))
def test_batch_size_clipping_warning(kind):
    X, y = _data(kind)
    ours, ref = PAIRS[kind]
    results = []
    for cls in (ours, ref):
        est = cls(hidden_layer_sizes=(3,), batch_size=X.shape[0] + 50, max_iter=2, random_state=0)
        w = _warnings_of(lambda: est.fit(X, y), UserWarning)
        w = [m for m in w if "batch_size" in m]
        results.append((w, est.t_, est.n_iter_))
    assert results[0] == results[1]
    assert results[0][0] == ["Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"]
    # batch_size is ignored by lbfgs: no warning there
    est = ours(hidden_layer_sizes=(3,), batch_size=10_000, solver="lbfgs", max_iter=2)
    assert [m for m in _warnings_of(lambda: est.fit(X, y)) if "batch_size" in m] == []


@pytest.mark.parametrize("kind", list(PAIRS))
def test_column_vector_y_warns_data_conversion(kind):
    X, y = _binary() if kind == "clf" else _regression()
    ours, ref = PAIRS[kind]
    w_ours = _warnings_of(lambda: _quiet_fit(ours(hidden_layer_sizes=(3,), max_iter=2), X, y[:, None]),
                          DataConversionWarning)
    w_ref = _warnings_of(lambda: _quiet_fit(ref(hidden_layer_sizes=(3,), max_iter=2), X, y[:, None]),
                         DataConversionWarning)
    assert len(w_ours) == 1 and w_ours == w_ref


# ---------------------------------------------------------------------------
# partial_fit


def test_partial_fit_classes_required_on_first_call():
    X, y = _binary()
    for cls in PAIRS["clf"]:
        with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit."):
            cls(solver="sgd").partial_fit(X, y)


def test_partial_fit_unseen_label_raises_like_sklearn():
    X, y = _multiclass()
    messages = []
    for cls in PAIRS["clf"]:
        est = cls(solver="sgd", hidden_layer_sizes=(3,))
        est.partial_fit(X, y, classes=[0, 1, 2, 3])
        with pytest.raises(ValueError) as err:
            est.partial_fit(X, np.where(y == 0, 7, y))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "`y` has classes not in `self.classes_`" in messages[0]


@pytest.mark.parametrize("labels", [["a", "b", "c"], ["no", "yes"], [-3, 0, 5, 8], [0, 1]])
def test_known_labels_encode_as_the_label_binarizer_does(monkeypatch, labels):
    """Streamed batches skip the binarizer's per-call type checks, with the same rows."""
    from sklearn.preprocessing import LabelBinarizer

    classes = np.array(labels)
    X = np.random.RandomState(0).normal(size=(30, 4))
    y = classes[np.arange(30) % len(classes)]
    est = anymlp.MLPClassifier(hidden_layer_sizes=(3,), solver="sgd").partial_fit(X, y, classes=classes)
    binarizer = LabelBinarizer().fit(classes)
    calls, original = [], LabelBinarizer.transform
    monkeypatch.setattr(LabelBinarizer, "transform", lambda self, y: calls.append(1) or original(self, y))
    batches = [y[:7], y[:1], y[y == classes[0]]]  # short, one row, one class only
    if classes.dtype.kind == "i":
        batches += [y.astype(np.int8), y.astype(np.uint8) if y.min() >= 0 else y.astype(np.int16)]
    for batch in batches:
        calls.clear()
        Y, _ = est._encode_target(batch, incremental=True)
        expected = original(binarizer, batch).astype(np.float64)
        assert calls == []
        assert Y.dtype == np.float64
        np.testing.assert_array_equal(Y, expected)


def test_partial_fit_unavailable_for_lbfgs():
    for cls in PAIRS["clf"]:
        assert not hasattr(cls(solver="lbfgs"), "partial_fit")
    # our fix: the regressor behaves like the classifier (scikit-learn's regressor has it)
    assert not hasattr(anymlp.MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(sk.MLPRegressor(solver="lbfgs"), "partial_fit")
    for cls in (anymlp.MLPClassifier, anymlp.MLPRegressor):
        with pytest.raises(AttributeError, match="partial_fit") as err:
            cls(solver="lbfgs").partial_fit
        assert "only available for stochastic optimizers" in str(err.value.__cause__)
        assert hasattr(cls(solver="sgd"), "partial_fit") and hasattr(cls(solver="adam"), "partial_fit")


@pytest.mark.parametrize("kind", list(PAIRS))
def test_partial_fit_rejects_early_stopping(kind):
    X, y = _data(kind)
    kw = {"classes": np.unique(y)} if kind == "clf" else {}
    for cls in PAIRS[kind]:
        with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
            cls(early_stopping=True).partial_fit(X, y, **kw)
    # even after a fit
    est = _quiet_fit(PAIRS[kind][0](early_stopping=True, hidden_layer_sizes=(3,), max_iter=2), X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        est.partial_fit(X, y)


def test_partial_fit_returns_self_and_works_after_pickle():
    X, y = _multiclass()
    est = anymlp.MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    assert est.partial_fit(X, y, classes=np.unique(y)) is est
    again = pickle.loads(pickle.dumps(est))
    ref = pickle.loads(pickle.dumps(est))
    again.partial_fit(X, y)
    ref.partial_fit(X, y)
    np.testing.assert_array_equal(again.coefs_[0], ref.coefs_[0])
    assert again.t_ == 2 * X.shape[0]


# ---------------------------------------------------------------------------
# warm_start


def test_warm_start_different_classes_message_matches_sklearn():
    X, y = _multiclass()
    messages = []
    for cls in PAIRS["clf"]:
        est = _quiet_fit(cls(warm_start=True, hidden_layer_sizes=(3,), max_iter=2), X, y)
        with pytest.raises(ValueError) as err:
            _quiet_fit(est, X, np.minimum(y, 2))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("warm_start can only be used where `y` has the same classes")


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_warm_start_continues_from_previous_coefs(kind, solver):
    X, y = _data(kind)
    cls = PAIRS[kind][0]
    params = dict(hidden_layer_sizes=(5,), solver=solver, random_state=0, max_iter=4, learning_rate_init=0.01)
    warm = _quiet_fit(cls(warm_start=True, **params), X, y)
    loss_after_first = warm.loss_
    _quiet_fit(warm, X, y)
    cold = _quiet_fit(cls(**params), X, y)
    _quiet_fit(cold, X, y)
    assert not np.allclose(warm.coefs_[0], cold.coefs_[0])  # the cold refit started over
    assert warm.loss_ < loss_after_first
    # a warm start also begins from weights the user assigned, as in scikit-learn
    fitted = []
    for c in PAIRS[kind]:
        est = _quiet_fit(c(warm_start=True, **params), X, y)
        est.coefs_ = [np.full_like(w, 0.01) for w in est.coefs_]
        est.intercepts_ = [np.full_like(b, -0.02) for b in est.intercepts_]
        np.testing.assert_array_equal(est.coefs_[0], 0.01)
        fitted.append(_quiet_fit(est, X, y))
    for a, b in zip(fitted[0].coefs_, fitted[1].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------
# our fixes and sample_weight checks


def test_poisson_negative_y_raises():
    X, y = _regression()
    with pytest.raises(ValueError, match="poisson"):
        anymlp.MLPRegressor(loss="poisson", max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="poisson"):
        anymlp.MLPRegressor(loss="poisson", solver="sgd").partial_fit(X, y)
    _quiet_fit(anymlp.MLPRegressor(loss="poisson", max_iter=2), X, np.abs(y))  # fine


@pytest.mark.parametrize("kind", list(PAIRS))
def test_all_zero_sample_weight_raises(kind):
    X, y = _data(kind)
    sw = np.zeros(X.shape[0])
    for cls in PAIRS[kind]:
        with pytest.raises(ValueError, match="at least one non-zero"):
            cls(max_iter=2).fit(X, y, sample_weight=sw)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_negative_sample_weight_raises(kind, solver):
    X, y = _data(kind)
    sw = np.ones(X.shape[0])
    sw[3] = -1.0
    with pytest.raises(ValueError, match="[Nn]egative"):
        PAIRS[kind][0](solver=solver, max_iter=2).fit(X, y, sample_weight=sw)


def test_sample_weight_wrong_length_raises():
    X, y = _binary()
    with pytest.raises(ValueError):
        anymlp.MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.ones(5))


def test_nonfinite_X_rejected_like_sklearn():
    X, y = _binary()
    X = X.copy()
    X[0, 0] = np.nan
    messages = []
    for cls in PAIRS["clf"]:
        with pytest.raises(ValueError) as err:
            cls(max_iter=2).fit(X, y)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def _predict_X_variants(X):
    """Inputs for predict: plain ones (the shortcut) and ones that need scikit-learn's checks."""
    nan, inf, big = X.copy(), X.copy(), np.full_like(X, np.finfo(np.float64).max / 4)
    nan[3, 2], inf[0, 0] = np.nan, -np.inf
    return {
        "float64": X, "float32": X.astype(np.float32), "fortran": np.asfortranarray(X),
        "strided rows": X[::2], "one row": X[:1],
        "finite, sum overflows": big, "nan": nan, "inf": inf,
        "int": np.round(X * 4).astype(np.int64), "uint8": np.round(np.abs(X) * 4).astype(np.uint8),
        "bool": X > 0, "float16": X.astype(np.float16), "longdouble": X.astype(np.longdouble),
        "list": X.tolist(), "strings": X.astype(str), "None": None, "wrong width": X[:, :3], "1d": X[0],
        "no rows": X[:0],
    }


def _outcome(fn):
    """('ok', result) or ('error', type, message): what a user sees."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return ("ok", np.asarray(fn()))
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize("fit_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_predict_input_checks_like_sklearn(kind, fit_dtype):
    """Every X is refused or answered as scikit-learn does, in the dtype it answers in
    (NumPy's promotion of X and the model: float32 model, float64 or int64 X -> float64)."""
    X, y = _data(kind)
    ours, theirs = (_quiet_fit(cls(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X.astype(fit_dtype), y)
                    for cls in PAIRS[kind])
    method = "predict_proba" if kind == "clf" else "predict"
    for name, variant in _predict_X_variants(X).items():
        a, b = (_outcome(lambda: getattr(est, method)(variant)) for est in (ours, theirs))
        assert a[0] == b[0], (name, a, b)
        if a[0] == "error":
            assert a[1:] == b[1:], name
            continue
        assert a[1].shape == b[1].shape, name
        if name != "longdouble":  # anymlp computes in float64 at most
            assert a[1].dtype == b[1].dtype, name
        # float32 fits differ from scikit-learn's at float32 rounding (its Adam step is float64)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-4 if fit_dtype == np.float32 else 1e-9, atol=1e-6,
                                   err_msg=name)


def test_predict_checks_plain_arrays_without_validate_data(monkeypatch):
    """The shortcut is taken for float NumPy matrices of the right width, and only for them."""
    import anymlp.estimators._validation as validation

    X, y = _multiclass()
    est = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y)
    calls = []
    original = validation.validate_data
    monkeypatch.setattr(validation, "validate_data", lambda *a, **k: calls.append(1) or original(*a, **k))
    for name, variant in _predict_X_variants(X).items():
        calls.clear()
        _outcome(lambda: est.predict_proba(variant))
        plain = name in ("float64", "float32", "fortran", "strided rows", "one row")
        assert calls == ([] if plain else [1]), name


def test_a_float32_model_predicts_float64_input_in_float64():
    """As NumPy computes ``X @ coefs_`` in scikit-learn: the model's float32 weights, exactly
    widened, applied in float64."""
    X, y = _regression()
    est = _quiet_fit(anymlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X.astype(np.float32), y)
    predicted = est.predict(X)
    assert predicted.dtype == np.float64 and est.predict(X.astype(np.float32)).dtype == np.float32
    hidden = np.maximum(X @ est.coefs_[0].astype(np.float64) + est.intercepts_[0], 0)
    np.testing.assert_allclose(predicted, (hidden @ est.coefs_[1] + est.intercepts_[1])[:, 0], rtol=1e-12)
    est.coefs_[1][:] = 0  # in place, after a float64 predict: no stale float64 copy answers
    est.intercepts_[1][:] = 7
    np.testing.assert_array_equal(est.predict(X), 7.0)


def test_nonfinite_weights_error_like_sklearn():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    messages = []
    for cls in PAIRS["reg"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"), pytest.raises(ValueError) as err:
                cls(solver="sgd", hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("Solver produced non-finite parameter weights.")


# ---------------------------------------------------------------------------
# the ecosystem


def test_dataframe_feature_names_and_warning():
    pd = pytest.importorskip("pandas")
    X, y = _binary()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    msgs = []
    for cls in PAIRS["clf"]:
        est = _quiet_fit(cls(hidden_layer_sizes=(3,), max_iter=3, random_state=0), df, y)
        np.testing.assert_array_equal(est.feature_names_in_, df.columns.to_numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est.predict(df)  # no warning with names
        msgs.append(_warnings_of(lambda: est.predict(X), UserWarning))
        with pytest.raises(ValueError, match="feature names"):
            est.predict(df.rename(columns={"f0": "other"}))
    assert len(msgs[0]) == 1 and msgs[0] == msgs[1]
    assert "X does not have valid feature names" in msgs[0][0]


@pytest.mark.parametrize("kind", list(PAIRS))
def test_pipeline_grid_search_cross_val(kind):
    X, y = _data(kind)
    est = PAIRS[kind][0](hidden_layer_sizes=(4,), max_iter=5, random_state=0, solver="lbfgs")
    pipe = make_pipeline(StandardScaler(), est)
    _quiet_fit(pipe, X, y)
    assert pipe.predict(X).shape == (X.shape[0],)
    step = pipe.steps[-1][0]
    assert step == ("mlpclassifier" if kind == "clf" else "mlpregressor")
    grid = GridSearchCV(pipe, {f"{step}__alpha": [1e-4, 1.0], f"{step}__hidden_layer_sizes": [(2,), 3]}, cv=2)
    _quiet_fit(grid, X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    best = grid.best_estimator_[-1]
    assert type(best) is type(est) and best is not est
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_clone_unfitted_and_equal_params():
    X, y = _binary()
    est = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, alpha=0.3, backend="numpy"), X, y)
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert not hasattr(c, "coefs_") and not hasattr(c, "n_iter_")


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_pickle_and_joblib_round_trip(tmp_path, kind, solver):
    X, y = _data(kind)
    est = _quiet_fit(PAIRS[kind][0](hidden_layer_sizes=(4,), solver=solver, max_iter=4, random_state=0), X, y)
    loaded = pickle.loads(pickle.dumps(est))
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded2 = joblib.load(path)
    for other in (loaded, loaded2):
        np.testing.assert_array_equal(other.predict(X), est.predict(X))
        if kind == "clf":
            np.testing.assert_array_equal(other.predict_proba(X), est.predict_proba(X))
        assert other.get_params() == est.get_params()
        for name in ("n_iter_", "t_", "loss_", "n_layers_", "n_outputs_", "out_activation_"):
            assert getattr(other, name) == getattr(est, name)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_score_returns_python_float_like_sklearn(kind):
    X, y = _data(kind)
    a, b = (_quiet_fit(cls(hidden_layer_sizes=(4,), max_iter=4, random_state=0), X, y) for cls in PAIRS[kind])
    s = a.score(X, y)
    assert type(s) is float
    assert s == pytest.approx(b.score(X, y), abs=1e-12)
    sw = np.linspace(0.1, 1.0, X.shape[0])
    assert a.score(X, y, sample_weight=sw) == pytest.approx(b.score(X, y, sample_weight=sw), abs=1e-12)


def test_predict_log_proba_is_log_predict_proba():
    X, y = _multiclass()
    est = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(est.predict_log_proba(X), np.log(est.predict_proba(X)))
    P = est.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    assert not hasattr(est, "decision_function")  # as in scikit-learn


def test_binary_predict_proba_stacks_like_sklearn():
    X, y = _binary()
    a, b = (_quiet_fit(cls(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y) for cls in PAIRS["clf"])
    P = a.predict_proba(X)
    assert P.shape == (X.shape[0], 2)
    np.testing.assert_array_equal(P[:, 0], 1 - P[:, 1])
    np.testing.assert_allclose(P, b.predict_proba(X), atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_sparse_same_as_dense(kind, fmt, solver):
    X, y = _data(kind)
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # really sparse
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    params = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=5, random_state=0, early_stopping=solver == "sgd")
    dense = _quiet_fit(PAIRS[kind][0](**params), X, y)
    sparse = _quiet_fit(PAIRS[kind][0](**params), Xs, y)
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict(Xs), dense.predict(X), atol=1e-10)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(Xs), atol=1e-10)


def test_tags_like_sklearn():
    for kind in PAIRS:
        ours, ref = PAIRS[kind]
        t_ours, t_ref = ours().__sklearn_tags__(), ref().__sklearn_tags__()
        assert t_ours.input_tags.sparse == t_ref.input_tags.sparse is True
        assert t_ours.estimator_type == t_ref.estimator_type
    assert anymlp.MLPClassifier().__sklearn_tags__().classifier_tags.multi_label is True


# ---------------------------------------------------------------------------
# metadata routing


@pytest.mark.parametrize("kind", list(PAIRS))
def test_metadata_routing_sample_weight(kind):
    X, y = _data(kind)
    sw = np.where(np.arange(X.shape[0]) % 2 == 0, 1.0, 0.1)
    params = dict(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=10, random_state=0)
    cls = PAIRS[kind][0]
    with sklearn.config_context(enable_metadata_routing=True):
        routing = cls().get_metadata_routing()
        assert "sample_weight" in routing.fit.requests
        assert "sample_weight" in routing.score.requests
        est = cls(**params).set_fit_request(sample_weight=True).set_score_request(sample_weight=False)
        pipe = Pipeline([("scale", StandardScaler().set_fit_request(sample_weight=False)), ("mlp", est)])
        _quiet_fit(pipe, X, y, sample_weight=sw)
        # without requesting it, routing refuses the metadata
        unrequested = Pipeline([("scale", StandardScaler().set_fit_request(sample_weight=False)),
                                ("mlp", cls(**params))])
        with pytest.raises(UnsetMetadataPassedError, match=r"sample_weight.*MLP"):
            unrequested.fit(X, y, sample_weight=sw)
        est_pf = cls(hidden_layer_sizes=(3,)).set_partial_fit_request(sample_weight=True)
        assert est_pf.get_metadata_routing().partial_fit.requests["sample_weight"] is True
    # the routed weights reached the model: same as fitting the steps by hand
    Xt = StandardScaler().fit_transform(X)
    direct = _quiet_fit(cls(**params), Xt, y, sample_weight=sw)
    np.testing.assert_allclose(pipe[-1].coefs_[0], direct.coefs_[0], rtol=1e-10, atol=1e-12)
    unweighted = _quiet_fit(cls(**params), Xt, y)
    assert not np.allclose(unweighted.coefs_[0], direct.coefs_[0])


def _raises_invalid_parameter(call) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except InvalidParameterError:
        return True
    return False


@pytest.mark.parametrize("library", [anymlp, sk])
def test_parameters_are_validated_when_scikit_learn_validates_them(library):
    """fit and a first partial_fit check the parameters; a partial_fit of a fitted model
    does not (scikit-learn skips it there, a fixed cost of every streamed chunk), and
    ``skip_parameter_validation`` turns all of it off."""
    X, y = make_classification(60, 5, n_classes=3, n_informative=3, random_state=0)
    bad = dict(alpha=-1e-4)  # harmless to train with, out of the declared range
    make = lambda **p: library.MLPClassifier((4,), max_iter=2, random_state=0, **p)  # noqa: E731
    assert _raises_invalid_parameter(lambda: make(**bad).fit(X, y))
    assert _raises_invalid_parameter(lambda: make(**bad).partial_fit(X, y, classes=[0, 1, 2]))
    fitted = make().partial_fit(X, y, classes=[0, 1, 2]).set_params(**bad)
    assert not _raises_invalid_parameter(lambda: fitted.partial_fit(X, y))
    if library is anymlp:  # except anymlp's callbacks, which a wrong type would silently switch off
        assert _raises_invalid_parameter(lambda: fitted.set_params(callbacks="progress").partial_fit(X, y))
    with sklearn.config_context(skip_parameter_validation=True):
        assert not _raises_invalid_parameter(lambda: make(**bad).fit(X, y))


def test_no_improvement_rounds_like_scikit_learn_in_float32():
    """Two equal float32 losses with tol=1e-8: ``best - tol`` rounds back to best in float32,
    so scikit-learn counts an improvement; in float64 it would count none. Its own
    ``_update_no_improvement_count`` on the same losses is the oracle."""
    from anymlp.training import History

    counts = []
    for dtype in (np.float32, np.float64):
        history = History(early_stopping=False, loss_dtype=np.dtype(dtype))
        ref = sk.MLPRegressor(tol=1e-8, early_stopping=False, verbose=False)
        ref.loss_curve_, ref.best_loss_, ref._no_improvement_count = [], np.inf, 0
        for _ in range(2):
            history.record_loss(1.0, 10)
            history.update_no_improvement(1e-8, None, None, None)
            ref.loss_curve_.append(dtype(1.0))
            ref._update_no_improvement_count(False, None, None, None)
        assert history.no_improvement_count == ref._no_improvement_count
        counts.append(history.no_improvement_count)
    assert counts == [0, 1]


def _edited_then_continued(cls, edit, continue_with):
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16
    rng = np.random.RandomState(0)
    model = cls(hidden_layer_sizes=(10,), solver="sgd", learning_rate="invscaling", max_iter=4, random_state=0,
                warm_start=True)
    _quiet_fit(model, X, y[:300])
    edit(model)
    noisy = X + rng.normal(scale=1.0, size=X.shape)
    if continue_with == "partial_fit":
        model.partial_fit(noisy, y[:300])
    else:
        _quiet_fit(model.set_params(max_iter=30), noisy, y[:300])
    return model


@pytest.mark.parametrize("continue_with", ["warm fit", "partial_fit"])
@pytest.mark.parametrize("edit", ["best_loss_", "loss_curve_", "t_", "_no_improvement_count"])
def test_edited_state_attributes_steer_the_continuation_as_in_scikit_learn(edit, continue_with):
    """scikit-learn's fitted attributes are its training state: a warm fit or partial_fit goes
    on from whatever the user set them to (t_ drives the invscaling rate)."""
    change = {"best_loss_": lambda m: setattr(m, "best_loss_", np.inf),
              "loss_curve_": lambda m: setattr(m, "loss_curve_", []),
              "t_": lambda m: setattr(m, "t_", 0),
              "_no_improvement_count": lambda m: setattr(m, "_no_improvement_count", 9)}[edit]
    ours, ref = (_edited_then_continued(cls, change, continue_with) for cls in PAIRS["clf"])
    untouched = _edited_then_continued(anymlp.MLPClassifier, lambda m: None, continue_with)
    for name in ("n_iter_", "t_", "best_loss_", "_no_improvement_count"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.loss_curve_ == pytest.approx(ref.loss_curve_, rel=1e-9)
    np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], rtol=1e-9, atol=1e-12)
    changed = [getattr(ours, n) != getattr(untouched, n) for n in ("n_iter_", "t_", "best_loss_",
                                                                   "_no_improvement_count")]
    changed.append(len(ours.loss_curve_) != len(untouched.loss_curve_))
    changed.append(not np.array_equal(ours.coefs_[0], untouched.coefs_[0]))
    assert any(changed), "the edit must make a difference for this test to mean anything"


def test_a_failed_refit_leaves_fresh_records_as_scikit_learn():
    """A new fit that fails at the early-stopping split has already reset the weights: its
    records are those of a fresh model too, not the previous fit's."""
    X, y = load_digits(return_X_y=True)
    models = []
    for cls in PAIRS["clf"]:
        model = _quiet_fit(cls(hidden_layer_sizes=(5,), max_iter=3, random_state=0, early_stopping=True), X, y)
        with pytest.raises(ValueError):
            model.fit(X[:8], y[:8])
        models.append(model)
    for name in ("n_iter_", "t_", "loss_curve_", "validation_scores_", "best_validation_score_", "best_loss_",
                 "_no_improvement_count"):
        assert getattr(models[0], name) == getattr(models[1], name), name
    # scikit-learn keeps the previous fit's loss_ beside the new weights; the new network has none yet
    assert hasattr(models[1], "loss_") and not hasattr(models[0], "loss_")


class _RaiseOnEpochEnd:
    def on_epoch_end(self, estimator, record):
        raise RuntimeError("callback failed")


def test_a_new_lbfgs_fit_stopped_by_a_callback_holds_no_earlier_loss():
    X, y = load_digits(return_X_y=True)
    model = _quiet_fit(anymlp.MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=10, random_state=0),
                       X, y)
    model.set_params(callbacks=[_RaiseOnEpochEnd()])
    with pytest.raises(RuntimeError, match="callback failed"):
        model.fit(X, y)
    fresh = anymlp.MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=1, random_state=0,
                                 callbacks=[_RaiseOnEpochEnd()])
    with pytest.raises(RuntimeError):
        fresh.fit(X, y)
    for stopped in (model, fresh):  # the new network's initial weights, and nothing said of a loss
        assert stopped.n_iter_ == 0 and not hasattr(stopped, "loss_")
        np.testing.assert_array_equal(stopped.coefs_[0], fresh.coefs_[0])


@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_continuing_on_another_number_of_outputs_is_refused_and_changes_nothing(call):
    """scikit-learn broadcasts the one-output y against the two-output network and trains on."""
    rng = np.random.RandomState(0)
    X = rng.rand(50, 3)
    model = _quiet_fit(anymlp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, warm_start=True, random_state=0),
                       X, rng.rand(50, 2))
    before = pickle.dumps(model)
    with pytest.raises(ValueError, match="y has 1 outputs, but the model was fit with 2"):
        getattr(model, call)(X, rng.rand(50))
    assert pickle.dumps(model) == before


def test_a_warm_fit_failing_at_the_split_changes_no_record_as_in_scikit_learn():
    """Early stopping switched on for a warm fit whose validation share is too small: the
    records stay those of the fit before, as scikit-learn's do (and a later fit goes on)."""
    rng = np.random.RandomState(0)
    X = rng.randn(60, 4)
    y = X @ rng.randn(4)
    models = []
    for cls in PAIRS["reg"]:
        model = _quiet_fit(cls(hidden_layer_sizes=(5,), max_iter=4, random_state=0, warm_start=True), X, y)
        model.set_params(early_stopping=True, validation_fraction=0.01)
        with pytest.raises(ValueError, match="validation set is too small"):
            model.fit(X, y)
        models.append(model)
    for name in ("n_iter_", "t_", "best_loss_", "validation_scores_", "best_validation_score_", "loss_curve_"):
        assert getattr(models[0], name) == getattr(models[1], name), name
    _quiet_fit(models[0].set_params(validation_fraction=0.2), X, y)
    assert len(models[0].validation_scores_) == models[0].n_iter_ > 0


@pytest.mark.parametrize("edit", ["tuple", "array"])
def test_state_lists_given_as_other_sequences_are_taken_as_lists(edit):
    """scikit-learn fails on the first append; the loop here appends to, and rolls back, a list."""
    rng = np.random.RandomState(0)
    X = rng.randn(60, 4)
    y = X @ rng.randn(4)
    model = _quiet_fit(anymlp.MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0), X, y)
    earlier = list(model.loss_curve_)
    model.loss_curve_ = tuple(earlier) if edit == "tuple" else np.asarray(earlier)
    model.partial_fit(X, y)
    assert isinstance(model.loss_curve_, list) and model.loss_curve_[:3] == earlier and len(model.loss_curve_) == 4
    assert model.n_iter_ == 1


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("call", ["warm fit", "partial_fit"])
def test_a_float32_model_given_float64_X_reports_float64_losses_as_scikit_learn(solver, call):
    """scikit-learn's predictions take X's dtype where it is wider than the model's."""
    if call == "partial_fit" and solver == "lbfgs":
        pytest.skip("no partial_fit for lbfgs")
    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 4), rng.rand(60).astype(np.float32)
    types = []
    for cls in PAIRS["reg"]:
        model = _quiet_fit(cls(hidden_layer_sizes=(3,), solver=solver, max_iter=2, random_state=0, warm_start=True),
                           X.astype(np.float32), y)
        if call == "partial_fit":
            model.partial_fit(X, y)
        else:
            _quiet_fit(model, X, y)
        types.append((type(model.loss_), [type(v) for v in getattr(model, "loss_curve_", [])]))
    assert types[0] == types[1] and types[0][0] is np.float64


@pytest.mark.parametrize("weights", [["a", "b"] * 30, [1 + 0j, 2 + 0j] * 30, [[1.0]] * 60])
def test_list_weights_that_are_not_real_numbers_get_scikit_learns_error(weights):
    X, y = _binary(60)
    errors = []
    for cls in PAIRS["clf"]:
        with pytest.raises(Exception) as caught:
            cls(max_iter=1).fit(X, y, sample_weight=weights)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
