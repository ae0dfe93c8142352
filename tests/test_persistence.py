"""Models pickle on any backend and load where only NumPy is installed."""

import pickle
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits

import anymlp
from anymlp import IncompatibleModelError, MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200] / 16.0, y[:200]


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_pickle_round_trip_predicts_identically(backend, digits, solver):
    X, y = digits
    Xb = backend.asarray(X)
    clf = _fit(MLPClassifier((12,), solver=solver, max_iter=5, random_state=0), Xb, backend.asarray(y))
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(backend.numpy(loaded.predict_proba(Xb)), backend.numpy(clf.predict_proba(Xb)))
    # And on NumPy input: the saved model is NumPy underneath.
    np.testing.assert_allclose(loaded.predict_proba(X.astype(backend.dtype_name or "float64")),
                               backend.numpy(clf.predict_proba(Xb)), atol=1e-6)
    assert loaded._anymlp_version == anymlp.__version__


def test_partial_fit_continues_after_unpickling(device_backend, digits):
    X, y = digits
    Xb, yb = device_backend.asarray(X), device_backend.asarray(y)
    clf = MLPClassifier((12,), random_state=0).partial_fit(Xb, yb, classes=np.unique(y))
    loaded = pickle.loads(pickle.dumps(clf))
    clf.partial_fit(Xb, yb)
    loaded.partial_fit(Xb, yb)
    np.testing.assert_allclose(device_backend.numpy(loaded.predict_proba(Xb)),
                               device_backend.numpy(clf.predict_proba(Xb)), atol=1e-6)
    assert loaded.t_ == clf.t_ == 2 * len(y)


def test_model_from_device_loads_with_gpu_libraries_blocked(tmp_path, digits):
    torch = pytest.importorskip("torch")
    X, y = digits
    clf = _fit(MLPRegressor(hidden_layer_sizes=(9,), max_iter=5, random_state=0), torch.asarray(X), torch.asarray(y, dtype=torch.float64))
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", clf.predict(torch.asarray(X)).numpy())
    script = textwrap.dedent(
        f"""
        import sys

        class Blocker:  # as if only NumPy were installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "cupy", "array_api_strict"):
                    raise ImportError(name + " is blocked")

        sys.meta_path.insert(0, Blocker())
        import joblib, numpy as np
        model = joblib.load({str(path)!r})
        pred = model.predict(np.load({str(tmp_path / 'X.npy')!r}))
        assert isinstance(pred, np.ndarray)
        np.testing.assert_allclose(pred, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-12)
        assert "torch" not in sys.modules and "cupy" not in sys.modules
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("fmt", [99, "2", 2.5])
def test_file_from_a_newer_format_is_refused_clearly(digits, fmt):
    X, y = digits
    clf = _fit(MLPClassifier((5,), max_iter=2, random_state=0), X, y)
    state = clf.__getstate__()
    state["_anymlp_pickle_format"] = fmt
    state["_anymlp_version"] = "9.0.0"
    fresh = MLPClassifier.__new__(MLPClassifier)
    with pytest.raises(IncompatibleModelError, match="saved by anymlp 9.0.0"):
        fresh.__setstate__(state)


def test_model_fit_with_backend_torch_predicts_where_torch_is_missing(tmp_path, digits):
    pytest.importorskip("torch")
    X, y = digits
    clf = _fit(MLPClassifier((7,), max_iter=3, random_state=0, backend="torch"), X, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", clf.predict_proba(X))
    script = textwrap.dedent(
        f"""
        import sys, pickle, warnings

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("torch is blocked")

        sys.meta_path.insert(0, Blocker())
        import numpy as np
        model = pickle.loads(open({str(path)!r}, "rb").read())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            proba = model.predict_proba(np.load({str(tmp_path / 'X.npy')!r}))
        assert any("Predicting on the input's own namespace" in str(w.message) for w in caught)
        np.testing.assert_allclose(proba, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-12)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_model_loaded_read_only_trains_on(tmp_path, digits, backend):
    """joblib's mmap_mode="r" hands back read-only parameters and optimizer state; training
    writes them in place, so they are copied first (torch shared the read-only pages, and
    its first in-place write crashed the process). The file stays as it was."""
    if backend == "torch":
        pytest.importorskip("torch")
    X, y = digits
    clf = _fit(MLPClassifier((5,), max_iter=2, random_state=0, backend=backend), X, y)
    joblib.dump(clf, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib", mmap_mode="r")
    assert not loaded._theta.flags.writeable
    loaded.partial_fit(X, y)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    unchanged = joblib.load(tmp_path / "m.joblib")
    assert unchanged.n_iter_ == 2 and unchanged.t_ == 2 * len(y)


def test_a_model_loaded_read_only_takes_a_new_layer(tmp_path, digits):
    X, y = digits
    clf = _fit(MLPClassifier((5,), max_iter=2, random_state=0), X, y)
    joblib.dump(clf, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib", mmap_mode="r")
    coefs = loaded.coefs_
    coefs[1] = np.zeros((5, 10))
    coefs[0] = np.zeros((64, 5))  # the same list, after the model took its own copy
    assert all(not np.any(c) for c in loaded.coefs_)
    assert np.allclose(loaded.predict_proba(X), loaded.predict_proba(X)[0])
    assert np.array_equal(joblib.load(tmp_path / "m.joblib")._theta, clf._theta)  # the file is untouched
