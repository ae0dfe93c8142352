"""Estimator-layer behaviour that mutation testing (round 6) found untested.

Each test pins one contract of the estimator layer (input validation, label
handling, the predict cache, the fitted-parameter lists, the early-stopping
scores) against scikit-learn 1.9.1 itself, or against anymlp's own NumPy path
where the input is a device array that scikit-learn cannot take. Device arrays are ``array_api_strict``:
it runs on the CPU and refuses anything the standard does not promise.
"""

import warnings

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

from anymlp import MLPClassifier, MLPRegressor

xps = pytest.importorskip("array_api_strict")


def _data(n=40, d=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)


def _quiet_fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y, **kw)


# ---------------------------------------------------------------- input validation


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself warns
def test_predict_refuses_np_matrix_like_sklearn():
    # np.matrix is an ndarray subclass: the fast predict path must not take it,
    # scikit-learn refuses it with a TypeError.
    X, y = _data()
    for est in (SkMLPRegressor, MLPRegressor):
        model = _quiet_fit(est(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y)
        with pytest.raises(TypeError, match="np.matrix is not supported"):
            model.predict(np.asmatrix(X))


@pytest.mark.parametrize("stage", ["fit", "predict"])
def test_device_X_without_rows_is_refused_like_sklearn(stage):
    X, y = _data()
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        SkMLPClassifier().fit(X[:0], y[:0])
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\)"):
        if stage == "fit":
            clf.fit(xps.asarray(X[:0]), xps.asarray(y[:0]))
        else:
            _quiet_fit(clf, X, y).predict(xps.asarray(X[:0]))


def test_refit_on_device_X_forgets_feature_names_like_sklearn():
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    sk = _quiet_fit(SkMLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), frame, y)
    _quiet_fit(sk, X, y)  # scikit-learn's oracle: an unnamed refit drops the names
    assert not hasattr(sk, "feature_names_in_")
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), frame, y)
    _quiet_fit(clf, xps.asarray(X), xps.asarray(y))
    assert not hasattr(clf, "feature_names_in_")



@pytest.mark.parametrize("call", ["predict", "warm fit", "partial_fit"])
def test_device_X_after_a_named_fit_warns_like_sklearn(call):
    """scikit-learn warns for any nameless X (a torch tensor too) given to a model fitted with
    column names, and a warm fit or partial_fit keeps the names."""
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    caught = []
    for model, convert in ((SkMLPClassifier, np.asarray), (MLPClassifier, xps.asarray)):
        est = _quiet_fit(model(hidden_layer_sizes=(4,), max_iter=2, random_state=0, warm_start=True), frame, y)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if call == "predict":
                est.predict(convert(X))
            elif call == "warm fit":
                est.fit(convert(X), convert(y))
            else:
                est.partial_fit(convert(X), convert(y))
        caught.append([str(w.message) for w in seen if "feature names" in str(w.message)])
        assert list(est.feature_names_in_) == ["a", "b", "c"]
    assert caught[0] == caught[1] and len(caught[1]) == 1


@pytest.mark.parametrize("what", ["X", "y", "sample_weight"])
def test_assume_finite_skips_the_device_checks_as_in_scikit_learn(what):
    import sklearn

    X, y = _data()
    X, yf, w = X.copy(), y.astype(float), np.ones(len(y))
    {"X": X, "y": yf, "sample_weight": w}[what][0] = np.nan
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    args = (xps.asarray(X), xps.asarray(yf))
    with pytest.raises(ValueError, match=f"Input {what} contains NaN"):
        model.fit(*args, sample_weight=xps.asarray(w))
    with sklearn.config_context(assume_finite=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN's RuntimeWarnings, the divergence
        try:
            model.fit(*args, sample_weight=xps.asarray(w))
        except ValueError as err:  # no finite epoch: the NaN got in, unchecked
            assert "contains NaN" not in str(err)

def test_bool_device_X_is_read_as_numbers_like_numpy_bool_X():
    # scikit-learn reads a boolean X as 0.0/1.0; a device bool X must be read the same.
    X, y = _data()
    X_bool = X > 0
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X_bool, y)
    expected = clf.predict_proba(X_bool)
    got = clf.predict_proba(xps.asarray(X_bool))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)


@pytest.mark.parametrize("row", [9, 39])
@pytest.mark.parametrize("bad, message", [(np.inf, "infinity"), (np.nan, "NaN")])
def test_bad_value_in_the_last_row_of_a_block_is_found(monkeypatch, row, bad, message):
    # The exact finiteness check walks device X in blocks (10 rows of 3 values here);
    # a block's last row, and X's, must be looked at too. Message as scikit-learn words it.
    from anymlp.estimators import _validation

    monkeypatch.setattr(_validation, "FINITE_CHECK_BLOCK", 30)
    X, y = _data()
    X[row, -1] = bad
    with pytest.raises(ValueError, match=f"Input X contains {message}"):
        SkMLPClassifier().fit(X, y)
    with pytest.raises(ValueError, match=f"Input X contains {message}"):
        MLPClassifier(max_iter=1).fit(xps.asarray(X), xps.asarray(y))


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkMLPClassifier), (MLPRegressor, SkMLPRegressor)])
def test_device_target_of_wrong_length_is_refused_like_sklearn(ours, theirs):
    X, y = _data()
    y_short = y[:-1].astype(float)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        theirs().fit(X, y_short)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        ours(max_iter=1).fit(xps.asarray(X), xps.asarray(y_short))


def test_device_sample_weight_must_be_one_dimensional():
    # scikit-learn refuses a column of weights (shape (n, 1)); so must the device path.
    X, y = _data()
    sw = np.ones((len(y), 1))
    with pytest.raises(ValueError):
        SkMLPClassifier(max_iter=1).fit(X, y, sample_weight=sw)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(max_iter=1).fit(xps.asarray(X), xps.asarray(y), sample_weight=xps.asarray(sw))


# ---------------------------------------------------------------- labels


def test_refit_without_warm_start_learns_the_new_classes_like_sklearn():
    X, _ = _data()
    y3 = np.arange(len(X)) % 3
    y2 = np.arange(len(X)) % 2  # labels the first fit saw, but fewer of them
    results = []
    for est in (SkMLPClassifier, MLPClassifier):
        model = _quiet_fit(est(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y3)
        _quiet_fit(model, X, y2)
        results.append((model.classes_, model.predict_proba(X[:2]).shape, model.n_outputs_))
    (sk_classes, sk_shape, sk_outputs), (classes, shape, outputs) = results
    np.testing.assert_array_equal(classes, sk_classes)
    assert (shape, outputs) == (sk_shape, sk_outputs)


def test_partial_fit_with_other_classes_is_refused_like_sklearn():
    # The classes of a later call must be those of the first (scikit-learn's
    # _check_partial_fit_first_call), also when they share the dtype.
    X, y = _data()
    for est in (SkMLPClassifier, MLPClassifier):
        model = est(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, y, classes=np.array([0, 1]))
        with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
            model.partial_fit(X, y, classes=np.array([0, 2]))


def _zero_weights(model):
    # Every output unit then sits at logistic(0) == 0.5 exactly: the tie.
    for array in list(model.coefs_) + list(model.intercepts_):
        array[...] = 0


@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_probability_of_exactly_one_half_predicts_the_negative_label_like_sklearn(target):
    # scikit-learn decodes with LabelBinarizer.inverse_transform: strictly above 0.5 is positive.
    X, y = _data()
    Y = y if target == "binary" else np.c_[y, 1 - y, y]
    predictions = []
    for est in (SkMLPClassifier, MLPClassifier):
        model = _quiet_fit(est(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, Y)
        _zero_weights(model)
        predictions.append(model.predict(X))
    np.testing.assert_array_equal(predictions[1], predictions[0])
    assert not predictions[0].any()


def test_sparse_multilabel_model_predicts_device_X_as_a_device_array():
    # Sparse predictions answer sparse (NumPy) input only; predictions follow X's namespace.
    import scipy.sparse as sp

    from anymlp._backend import to_host

    X, y = _data()
    Y = sp.csr_matrix(np.c_[y, 1 - y, y])
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, Y)
    host = clf.predict(X)
    assert sp.issparse(host)
    on_device = clf.predict(xps.asarray(X))
    assert not sp.issparse(on_device) and type(on_device).__module__.startswith("array_api_strict")
    np.testing.assert_array_equal(to_host(on_device), host.toarray())


def test_boolean_labels_come_back_in_the_namespace_of_X():
    from anymlp._backend import to_host

    X, y = _data()
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y.astype(bool))
    on_device = clf.predict(xps.asarray(X))
    assert type(on_device).__module__.startswith("array_api_strict")
    np.testing.assert_array_equal(to_host(on_device), clf.predict(X))


# ---------------------------------------------------------------- parameters and the predict cache


def _edit_by_setter(model):
    model.coefs_ = [np.zeros_like(c) for c in model.coefs_]


def _edit_by_item(model):
    model.intercepts_[-1] = np.full_like(model.intercepts_[-1], 3.0)


def _edit_by_refit(model):
    X, y = _data(seed=1)
    _quiet_fit(model, X, 2.0 * y)


@pytest.mark.parametrize("edit", [_edit_by_setter, _edit_by_item, _edit_by_refit])
def test_device_predictions_follow_parameter_changes(edit):
    # A NumPy model predicting device X keeps a converted copy of its parameters;
    # any change of the parameters must reach the device predictions too. (On the
    # CPU backends the copy of an in-place edit shares memory; a GPU copy would not.)
    from anymlp._backend import to_host

    X, y = _data()
    model = _quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y.astype(float))
    X_device = xps.asarray(X)
    before = to_host(model.predict(X_device))
    np.testing.assert_allclose(before, model.predict(X), rtol=1e-12)
    edit(model)
    after = model.predict(X)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(to_host(model.predict(X_device)), after, rtol=1e-12)


# ---------------------------------------------------------------- early-stopping scores


def test_regression_validation_score_of_non_finite_predictions_is_nan():
    # scikit-learn's _score_with_function: any non-finite prediction scores NaN
    # (r2 itself would say -inf, or raise).
    y_true = np.array([0.5, 1.0, 2.0])
    for bad in (np.inf, np.nan):
        y_pred = np.array([0.5, bad, 2.0])
        assert np.isnan(MLPRegressor()._score_predictions(y_true, y_pred, None))


@pytest.mark.parametrize("shape", [(1,), (1, 2)])
def test_regression_validation_score_of_one_row_is_r2_scores(shape):
    # r2 is undefined for one sample: r2_score warns and answers NaN.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import r2_score

    y_true, y_pred = np.full(shape, 1.0), np.full(shape, 2.0)
    with pytest.warns(UndefinedMetricWarning):
        expected = r2_score(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ours = MLPRegressor()._score_predictions(y_true, y_pred, None)
    assert np.isnan(expected) and np.isnan(ours)


def test_changed_out_activation_is_used_at_predict_like_sklearn():
    # scikit-learn reads out_activation_ on every predict; a known way to get other outputs.
    X, y = _data()
    sk = _quiet_fit(SkMLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y.astype(float))
    ours = _quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y.astype(float))
    sk.coefs_ = [np.array(c) for c in ours.coefs_]  # the same network in both
    sk.intercepts_ = [np.array(b) for b in ours.intercepts_]
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), rtol=1e-12)
    sk.out_activation_ = ours.out_activation_ = "logistic"
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), rtol=1e-12)


def test_model_fit_on_one_device_predicts_X_on_another():
    # Same library, another device: the parameters are copied to X's device, and the
    # predictions come back there, as they would on the model's own device.
    from anymlp._backend import to_host

    X, y = _data()
    device1 = xps.Device("device1")
    model = _quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
                       xps.asarray(X, device=device1), xps.asarray(y.astype(float), device=device1))
    X_default = xps.asarray(X)
    assert X_default.device != device1
    on_default = model.predict(X_default)
    assert on_default.device == X_default.device
    np.testing.assert_allclose(to_host(on_default), to_host(model.predict(xps.asarray(X, device=device1))),
                               rtol=1e-12)


def test_parameter_list_item_assignment_behaves_as_a_list_like_sklearn():
    # In scikit-learn coefs_ is a plain list: after coefs[0] = W, coefs[0] is W.
    X, y = _data()
    for est in (SkMLPRegressor, MLPRegressor):
        model = _quiet_fit(est(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y.astype(float))
        coefs = model.coefs_
        W = np.ones_like(coefs[0])
        coefs[0] = W
        assert coefs[0] is W
        coefs[1:] = [np.ones_like(coefs[1])]
        np.testing.assert_array_equal(coefs[1], 1.0)


def test_parameter_list_refuses_a_slice_assignment_that_changes_its_length():
    # Documented in _ParameterList: a change of length cannot keep the fitted architecture.
    X, y = _data()
    model = _quiet_fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y.astype(float))
    coefs = model.coefs_
    with pytest.raises(TypeError, match="one array per layer"):
        coefs[0:2] = [coefs[0]]
