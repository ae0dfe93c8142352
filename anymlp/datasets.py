"""Data for examples, benchmarks and the command line: MNIST and a small offline fallback.

Everything here returns host NumPy arrays. Move them to a device with the estimator's
``backend=``/``device=`` parameters (one copy per fit), not here.

Where :func:`load_mnist` looks, in order:

1. the ``path=`` argument (a ``.npz`` file, or a folder holding ``mnist.npz``);
2. ``$ANYMLP_DATA/mnist.npz`` (``ANYMLP_DATA`` may also name the file itself);
3. our cache, ``sklearn.datasets.get_data_home(data_home)/anymlp/mnist.npz``;
4. ``fetch_openml("mnist_784", version=1)``, whose result is written to that cache.

Accepted ``.npz`` layouts: ``X`` (70000, 784) and ``y`` (70000,), the OpenML row order
(what the cache holds); or Keras' ``x_train``/``y_train``/``x_test``/``y_test`` with
28x28 images.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import fetch_openml, get_data_home

__all__ = ["MNISTNotFoundError", "load_mnist", "load_digits_split", "mnist_cache_path"]

ENV_VAR = "ANYMLP_DATA"
FILE_NAME = "mnist.npz"
N_TRAIN, N_TEST, N_FEATURES = 60000, 10000, 784


class MNISTNotFoundError(FileNotFoundError):
    """No MNIST anywhere :func:`load_mnist` looked.

    ``places`` lists ``(place, why_not)`` pairs in the order they were tried.
    """

    def __init__(self, places: list[tuple[str, str]]):
        self.places = places
        lines = "\n".join(f"  {i}. {place}: {why}" for i, (place, why) in enumerate(places, 1))
        super().__init__(
            "MNIST was not found. Places looked, in order:\n"
            f"{lines}\n"
            f"Put an mnist.npz (arrays X uint8 (70000, 784) and y) in one of them, "
            f"set {ENV_VAR} to its folder, or pass path=."
        )


def mnist_cache_path(data_home: str | os.PathLike | None = None) -> Path:
    """Where :func:`load_mnist` caches MNIST: ``<scikit-learn data home>/anymlp/mnist.npz``."""
    return Path(get_data_home(data_home)) / "anymlp" / FILE_NAME


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    data_home: str | os.PathLike | None = None,
    download: bool = True,
    dtype=None,
    scale: bool = False,
):
    """Load MNIST with its standard split: the first 60000 rows train, the last 10000 test.

    Parameters
    ----------
    path : str or path-like, optional
        An ``.npz`` file, or a folder holding ``mnist.npz``. Looked at first; when it
        does not exist the search goes on (see the module docstring).
    data_home : str or path-like, optional
        scikit-learn's data home (default ``~/scikit_learn_data`` or
        ``$SCIKIT_LEARN_DATA``); our cache is ``<data_home>/anymlp/mnist.npz``.
    download : bool, default=True
        Whether to try ``fetch_openml`` when no file is found.
    dtype : dtype, optional
        Cast the images to this dtype (e.g. ``np.float32``). Default: keep ``uint8``.
    scale : bool, default=False
        Divide the images by 255, into [0, 1]. Needs a floating ``dtype`` (float64 when
        ``dtype`` is None).

    Returns
    -------
    X_train : ndarray of shape (60000, 784), host, uint8 unless ``dtype``/``scale``
    y_train : ndarray of shape (60000,), host, int64 digit labels 0-9
    X_test : ndarray of shape (10000, 784), host
    y_test : ndarray of shape (10000,), host, int64

    Raises
    ------
    MNISTNotFoundError
        (a ``FileNotFoundError``) naming every place looked and why each failed.
    ValueError
        A file was found but does not hold MNIST in a layout we know.
    """
    X, y = _find_mnist(path, data_home=data_home, download=download)
    X = _cast(X, dtype, scale)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _find_mnist(path, *, data_home, download):
    places = []
    for label, candidate in _candidate_files(path, data_home):
        if candidate is None:
            places.append((label, "not set"))
        elif not candidate.is_file():
            places.append((f"{label} {candidate}", "no such file"))
        else:
            return _read_npz(candidate)
    cache = mnist_cache_path(data_home)
    if not download:
        places.append(("download from OpenML (mnist_784)", "skipped: download=False"))
        raise MNISTNotFoundError(places)
    try:
        X, y = _download(data_home)
    except Exception as exc:  # noqa: BLE001 - any failure is reported with the others
        places.append(("download from OpenML (mnist_784)", f"{type(exc).__name__}: {exc}"))
        raise MNISTNotFoundError(places) from exc
    _write_cache(cache, X, y)
    return X, y


def _candidate_files(path, data_home):
    """``(label, Path or None)`` for each file to try, in search order."""
    if path is not None:
        yield "path=", _npz_in(Path(path))
    env = os.environ.get(ENV_VAR)
    yield f"${ENV_VAR}", _npz_in(Path(env)) if env else None
    yield "cache", mnist_cache_path(data_home)


def _npz_in(path: Path) -> Path:
    """A ``.npz`` path or any existing file is the file; anything else is a folder."""
    return path if path.suffix == ".npz" or path.is_file() else path / FILE_NAME


def _read_npz(file: Path):
    """``(X uint8 (70000, 784), y int64 (70000,))`` from either known layout."""
    damaged = (OSError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        opened = np.load(file, allow_pickle=False)
    except (ValueError, *damaged) as exc:  # not an .npz at all (NumPy speaks of pickles then)
        raise ValueError(f"{file} is not a NumPy .npz file that can be read ({exc.__class__.__name__}).") from None
    if not hasattr(opened, "files"):  # a single .npy array
        raise ValueError(f"{file} holds one array; expected an .npz with X and y "
                         "(or x_train, y_train, x_test, y_test).")
    with opened as data:
        keys = set(data.files)
        try:
            if {"X", "y"} <= keys:
                X, y = data["X"], data["y"]
            elif {"x_train", "y_train", "x_test", "y_test"} <= keys:
                X = np.concatenate([data["x_train"], data["x_test"]])
                y = np.concatenate([data["y_train"], data["y_test"]])
            else:
                raise ValueError(
                    f"{file} holds arrays {sorted(keys)}; expected X and y "
                    "(or x_train, y_train, x_test, y_test)."
                )
        except damaged as exc:  # truncated or corrupted inside the archive
            raise ValueError(f"{file} is damaged and cannot be read ({exc.__class__.__name__}: {exc}); "
                             "download it again.") from None
    return _check_mnist(X, y, file)


def _check_mnist(X, y, origin):
    X = np.asarray(X).reshape(len(X), -1)
    y = np.asarray(y)
    if X.dtype != np.uint8 and not _pixels(X):
        raise ValueError(
            f"{origin}: expected pixels as integers from 0 to 255 (MNIST's uint8); got {X.dtype} "
            f"values from {X.min()} to {X.max()}. Store the raw pixels; scaling is load_mnist's scale=."
        )
    if not _digits(y):
        raise ValueError(f"{origin}: expected digit labels 0 to 9; got {y.dtype} values "
                         f"{np.unique(y)[:10].tolist()}{' ...' if np.unique(y).size > 10 else ''}.")
    if X.shape != (N_TRAIN + N_TEST, N_FEATURES) or y.shape != (N_TRAIN + N_TEST,):
        raise ValueError(
            f"{origin}: expected X of shape (70000, 784) and y of shape (70000,), "
            f"got {X.shape} and {y.shape}."
        )
    return X.astype(np.uint8, copy=False), y.astype(np.int64)


def _digits(y) -> bool:
    """Does y hold whole numbers from 0 to 9 (NaN is none of them)?"""
    if not np.issubdtype(y.dtype, np.number):
        return False
    return bool(np.all((y >= 0) & (y <= 9) & (y == np.round(y))))


def _pixels(X) -> bool:
    """Does X hold whole numbers from 0 to 255 (say, uint8 pixels saved as int64 or float)?"""
    if not np.issubdtype(X.dtype, np.number) or X.min() < 0 or X.max() > 255:
        return False
    return np.issubdtype(X.dtype, np.integer) or bool(np.all(X == np.round(X)))


def _download(data_home):
    with warnings.catch_warnings():
        # fetch_openml warns on every retry; the failure, if any, is reported by us.
        warnings.simplefilter("ignore", UserWarning)
        bunch = fetch_openml("mnist_784", version=1, as_frame=False, data_home=data_home)
    return _check_mnist(bunch.data, np.asarray(bunch.target).astype(np.int64), "OpenML mnist_784")


def _write_cache(cache: Path, X, y) -> None:
    """Write atomically, so an interrupted write never leaves a half file to be read."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.partial.npz")
        np.savez_compressed(partial, X=X, y=y.astype(np.uint8))
        os.replace(partial, cache)
    except OSError as exc:
        warnings.warn(f"Could not cache MNIST at {cache}: {exc}", stacklevel=3)


def _cast(X, dtype, scale):
    if scale:
        dtype = np.float64 if dtype is None else dtype
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise ValueError(f"scale=True needs a floating dtype, got {np.dtype(dtype)}.")
        return X.astype(dtype) / np.asarray(255, dtype=dtype)
    return X if dtype is None else X.astype(dtype)


def load_digits_split(*, dtype=np.float64, test_size: float = 0.2, random_state: int = 0):
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], split 80/20 (stratified).

    The offline fallback of ``anymlp train``: always available, no download.

    Returns
    -------
    X_train, y_train, X_test, y_test : host ndarrays; X has 64 features (8x8 images)
        in ``dtype``, y is int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"The digits are scaled to [0, 1]: dtype must be a floating dtype, got {np.dtype(dtype)}.")
    digits = load_digits()
    X = digits.data.astype(dtype) / np.asarray(16, dtype=dtype)
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y
    )
    return X_train, y_train, X_test, y_test
