"""anymlp.datasets: where MNIST is looked for, its split, the cache, and the error."""

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anymlp import datasets
from anymlp.datasets import MNISTNotFoundError, load_digits_split, load_mnist, mnist_cache_path

N = 70000


def _fake_mnist():
    """Labels 0-9 in the training rows and a constant 7 in the test rows, so a wrong split shows."""
    X = np.zeros((N, 784), dtype=np.uint8)
    X[:, 0] = np.arange(N) % 251
    y = np.where(np.arange(N) < 60000, np.arange(N) % 10, 7).astype(np.uint8)
    return X, y


@pytest.fixture(scope="module")
def fake_file(tmp_path_factory):
    X, y = _fake_mnist()
    path = tmp_path_factory.mktemp("fake") / "mnist.npz"
    np.savez(path, X=X, y=y)
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $ANYMLP_DATA, an empty data home, and a download that would fail loudly."""
    monkeypatch.delenv("ANYMLP_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn_home"))

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(datasets, "fetch_openml", no_network)
    return tmp_path


def _real_mnist_dir():
    folder = os.environ.get("ANYMLP_DATA")
    if not folder:
        pytest.skip("ANYMLP_DATA is not set (point it at a folder holding mnist.npz to run this)")
    if not (Path(folder) / "mnist.npz").is_file() and not Path(folder).is_file():
        pytest.skip(f"ANYMLP_DATA={folder} holds no mnist.npz")
    return folder


def _check_split(X_train, y_train, X_test, y_test):
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64


def test_explicit_path_gives_standard_split(isolated, fake_file):
    X_train, y_train, X_test, y_test = load_mnist(fake_file)
    _check_split(X_train, y_train, X_test, y_test)
    assert X_train.dtype == np.uint8
    X, y = _fake_mnist()
    np.testing.assert_array_equal(y_train, y[:60000])
    assert np.all(y_test == 7)
    np.testing.assert_array_equal(X_test[:, 0], X[60000:, 0])


def test_explicit_path_may_be_a_folder(isolated, fake_file):
    _, _, _, y_test = load_mnist(fake_file.parent)
    assert np.all(y_test == 7)


@pytest.mark.parametrize("point_at", ["folder", "file"])
def test_env_var(isolated, fake_file, monkeypatch, point_at):
    monkeypatch.setenv("ANYMLP_DATA", str(fake_file.parent if point_at == "folder" else fake_file))
    _check_split(*load_mnist())


def test_missing_explicit_path_falls_through_to_env(isolated, fake_file, monkeypatch):
    monkeypatch.setenv("ANYMLP_DATA", str(fake_file.parent))
    _check_split(*load_mnist(isolated / "nothing_here.npz"))


def test_dtype_and_scale(isolated, fake_file):
    X_train, _, X_test, _ = load_mnist(fake_file, dtype=np.float32, scale=True)
    assert X_train.dtype == np.float32 and X_test.dtype == np.float32
    assert 0.0 <= X_train.min() and X_train.max() == pytest.approx(250 / 255)
    assert load_mnist(fake_file, dtype=np.float64)[0].max() == 250.0
    with pytest.raises(ValueError, match="floating dtype"):
        load_mnist(fake_file, dtype=np.int32, scale=True)


def test_keras_layout(isolated, tmp_path):
    X, y = _fake_mnist()
    images = X.reshape(N, 28, 28)
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=images[:60000], y_train=y[:60000], x_test=images[60000:], y_test=y[60000:])
    X_train, y_train, X_test, y_test = load_mnist(path)
    _check_split(X_train, y_train, X_test, y_test)
    np.testing.assert_array_equal(X_train[:, 0], X[:60000, 0])


def test_wrong_content_is_a_value_error(isolated, tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros(3))
    with pytest.raises(ValueError, match="expected X and y"):
        load_mnist(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", X=np.zeros((10, 784), np.uint8), y=np.zeros(10, np.uint8))
    with pytest.raises(ValueError, match="70000"):
        load_mnist(tmp_path / "b.npz")


def test_error_names_every_place_looked(isolated, monkeypatch):
    explicit = isolated / "explicit" / "mnist.npz"
    env_dir = isolated / "env_dir"
    monkeypatch.setenv("ANYMLP_DATA", str(env_dir))
    data_home = isolated / "home"
    with pytest.raises(MNISTNotFoundError) as info:
        load_mnist(explicit, data_home=data_home)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(explicit) in message
    assert str(env_dir / "mnist.npz") in message
    assert str(data_home / "anymlp" / "mnist.npz") in message
    assert "OSError: no network in this test" in message
    assert [place for place, _ in info.value.places][0].startswith("path=")
    assert len(info.value.places) == 4


def test_error_says_env_var_unset_and_download_skipped(isolated):
    with pytest.raises(MNISTNotFoundError) as info:
        load_mnist(download=False)
    message = str(info.value)
    assert "$ANYMLP_DATA: not set" in message
    assert "download=False" in message
    assert str(mnist_cache_path()) in message
    assert str(isolated / "sklearn_home") in message


def test_download_is_cached_in_data_home(isolated, monkeypatch):
    X, y = _fake_mnist()
    calls = []

    def fake_fetch(name, *, version, as_frame, data_home):
        calls.append((name, version, as_frame, data_home))
        # OpenML gives float pixels and string labels
        return SimpleNamespace(data=X.astype(np.float32), target=y.astype(str).astype(object))

    monkeypatch.setattr(datasets, "fetch_openml", fake_fetch)
    home = isolated / "home"
    first = load_mnist(data_home=home)
    assert calls == [("mnist_784", 1, False, home)]
    cache = home / "anymlp" / "mnist.npz"
    assert cache.is_file() and mnist_cache_path(home) == cache
    with np.load(cache) as data:  # our own layout, like the shared mnist.npz
        assert data["X"].dtype == np.uint8 and data["X"].shape == (N, 784)
        assert data["y"].dtype == np.uint8

    monkeypatch.setattr(datasets, "fetch_openml", lambda *a, **k: pytest.fail("downloaded twice"))
    second = load_mnist(data_home=home)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not list(cache.parent.glob("*.partial*"))


def test_real_mnist_from_env():
    folder = _real_mnist_dir()
    X_train, y_train, X_test, y_test = load_mnist()
    _check_split(X_train, y_train, X_test, y_test)
    assert X_train.dtype == np.uint8 and X_train.max() == 255
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert sorted(np.unique(y_test).tolist()) == list(range(10))
    X_again = load_mnist(Path(folder) / "mnist.npz" if Path(folder).is_dir() else folder)[0]
    np.testing.assert_array_equal(X_train[:100], X_again[:100])


def test_digits_split():
    X_train, y_train, X_test, y_test = load_digits_split(dtype=np.float32)
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))  # stratified
    again = load_digits_split(dtype=np.float32)
    np.testing.assert_array_equal(again[1], y_train)  # deterministic


@pytest.mark.parametrize("store, message", [
    (lambda X: X / 255.0, r"expected pixels as integers from 0 to 255.*float64 values from 0\.0 to 0\.98"),
    (lambda X: X.astype(np.int64) - 1, r"expected pixels as integers from 0 to 255.*int64 values from -1"),
])
def test_pixels_that_are_not_mnists_are_refused_not_wrapped(isolated, tmp_path, store, message):
    X, y = _fake_mnist()
    path = tmp_path / "scaled.npz"
    np.savez(path, X=store(X[-300:]), y=y[-300:])  # the pixels are checked before the shape
    with pytest.raises(ValueError, match=message):
        load_mnist(path, download=False)


@pytest.mark.parametrize("labels, message", [
    (lambda y: np.where(np.arange(len(y)) == 5, np.nan, y.astype(float)), r"expected digit labels 0 to 9.*float64"),
    (lambda y: y.astype(np.int64) + 100, r"expected digit labels 0 to 9; got int64 values \[107\]"),
])
def test_labels_that_are_not_digits_are_refused(isolated, tmp_path, labels, message):
    X, y = _fake_mnist()
    path = tmp_path / "labels.npz"
    np.savez(path, X=X[-300:], y=labels(y[-300:]))  # the labels are checked before the shape too
    with pytest.raises(ValueError, match=message):
        load_mnist(path, download=False)


def test_a_damaged_npz_says_so(isolated, tmp_path):
    X, y = _fake_mnist()
    good = tmp_path / "good.npz"
    np.savez_compressed(good, X=X[-300:], y=y[-300:])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a NumPy .npz file that can be read"):
        load_mnist(truncated, download=False)
    corrupted = tmp_path / "corrupted.npz"
    middle = len(data) // 3
    corrupted.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    with pytest.raises(ValueError, match="(is damaged and cannot be read|is not a NumPy .npz file)"):
        load_mnist(corrupted, download=False)


def test_pixels_stored_as_wider_integers_load(isolated, tmp_path):
    X, y = _fake_mnist()
    path = tmp_path / "int16.npz"
    np.savez(path, X=X.astype(np.int16), y=y)
    loaded = load_mnist(path, download=False, scale=False)
    assert np.array_equal(np.concatenate([loaded[0], loaded[2]]), X)


def test_a_file_that_is_not_an_npz_says_so(isolated, tmp_path):
    garbage = tmp_path / "mnist.npz"
    garbage.write_text("garbage")
    with pytest.raises(ValueError, match=f"{garbage} is not a NumPy .npz file"):
        load_mnist(garbage, download=False)
    one = tmp_path / "one.npy"
    np.save(one, np.zeros(3))
    with pytest.raises(ValueError, match="holds one array"):
        load_mnist(one, download=False)


def test_digits_split_needs_a_floating_dtype():
    assert load_digits_split(dtype=np.float32)[0].dtype == np.float32
    with pytest.raises(ValueError, match="dtype must be a floating dtype, got int64"):
        load_digits_split(dtype=np.int64)
