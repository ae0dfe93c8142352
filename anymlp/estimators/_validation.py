"""Input checks for device arrays, with scikit-learn's messages.

Host input (NumPy, lists, pandas, scipy sparse) goes through scikit-learn's own
``validate_data``. Arrays of another library stay on their device: these checks
look at shape and dtype for free and read back one boolean for NaN/inf, once
per call.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import sklearn
from sklearn.utils.validation import _check_feature_names, _check_sample_weight, validate_data

from anymlp._backend import (
    backend_name, device_of, float_dtype, input_namespace, is_device_array, is_sparse_tensor, to_host,
    to_namespace_of,
)


_HOST_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def validate_host_fit_data(estimator, X, y, **kwargs):
    """``validate_data(estimator, X, y, **kwargs)``, X's NaN/inf check done by a faster probe.

    scikit-learn's first pass over X is ``np.sum(X)`` on one thread: 28 ms for
    MNIST's 47M float32 values, 44 ms in float64, most of a fit's setup. When
    :func:`_passes_finite_check` clears X first, ``validate_data`` skips that
    pass; otherwise X takes scikit-learn's own check, so every message (and
    which of X and y is reported first) is scikit-learn's.
    """
    if _passes_finite_check(X):
        kwargs["ensure_all_finite"] = False
    return validate_data(estimator, X, y, **kwargs)


# The BLAS probe pays from this many values on, for X this wide or wider (its row sums are a
# temporary of X.size / width values). Below, np.sum is as fast and allocates nothing.
_PROBE_MIN_VALUES, _PROBE_MIN_WIDTH = 1 << 16, 16


def _passes_finite_check(X) -> bool:
    """True when X is a 2-D NumPy float32/float64 array that scikit-learn's NaN/inf check
    would pass: its values are all finite, or scikit-learn's ``assume_finite`` is set.

    A large, wide, contiguous X is probed by ``X @ ones``, its row sums, through
    BLAS (multithreaded: 9 ms on MNIST's float32, 15 ms in float64), then their
    sum; any other by scikit-learn's ``np.sum``. NaN and infinities carry
    through both: NaN * 1, inf * 1 and inf - inf are not finite, and with no
    zero in the vector an IEEE-conforming BLAS has no term to skip. False also
    when a sum merely overflows, and for anything else (lists, pandas, sparse,
    other dtypes, subclasses such as memmaps): scikit-learn's check then decides.
    """
    if not (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _HOST_FLOATS and X.size):
        return False
    if sklearn.get_config()["assume_finite"]:
        return True  # scikit-learn skips the check too
    with np.errstate(over="ignore", invalid="ignore"):
        if X.size >= _PROBE_MIN_VALUES and X.shape[1] >= _PROBE_MIN_WIDTH and (
                X.flags.c_contiguous or X.flags.f_contiguous):
            return bool(np.isfinite(np.add.reduce(X @ np.ones(X.shape[1], X.dtype))))
        return bool(np.isfinite(np.add.reduce(X, axis=None)))


def validate_predict_host_X(estimator, X):
    """``validate_data(estimator, X, reset=False)`` as a predict asks it, with a shortcut.

    A NumPy float32/float64 matrix of the fitted width holding finite values
    is what ``validate_data`` hands back unchanged when the model was fit
    without feature names. Recognising it directly saves ~90 us a call, more
    than half of a one-row ``predict_proba``. Everything else (lists, pandas,
    sparse, other dtypes, a wrong width, NaN or inf) goes through
    ``validate_data`` for scikit-learn's conversions, warnings and messages.
    """
    if _plainly_valid(estimator, X):
        return X
    # dtype="numeric", as scikit-learn's predict asks: strings are refused, not parsed;
    # integers stay integers here and take the model's dtype (or float64) afterwards.
    return validate_data(estimator, X, accept_sparse=["csr", "csc"], reset=False)


def _plainly_valid(estimator, X) -> bool:
    if not (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _HOST_FLOATS and X.shape[0] > 0):
        return False
    if X.shape[1] != estimator.n_features_in_ or hasattr(estimator, "feature_names_in_"):
        return False
    # A NaN, an infinity or an overflowing sum sends X the long way, which finds out which.
    return _passes_finite_check(X)


def targets_beside_X(X, y, sample_weight):
    """``(y, sample_weight)``, arrays of another library or device than X's moved to X's.

    Everything follows X, as in scikit-learn's array-API estimators: X decides
    where training runs, and the targets are small. Host arrays (NumPy, lists,
    pandas) stay as they are and are checked and moved with X later; a tensor
    beside NumPy X comes to the host (a ``Pipeline`` whose scaler hands on
    NumPy while ``y`` stays a tensor).
    """
    x_xp, x_device = input_namespace(X)  # (raises for tensors without data)
    moved = []
    for name, a in (("y", y), ("sample_weight", sample_weight)):
        if is_device_array(a):
            refuse_sparse(a, name)
            input_namespace(a)  # (raises for tensors without data)
            a = to_namespace_of(a, x_xp, x_device)
            if isinstance(a, np.ndarray) and a.ndim == 0:
                a = a.item()  # one weight for all: scikit-learn takes a number, not a 0-d array
        moved.append(a)
    return tuple(moved)


_TORCH_COMPRESSED = ("torch.sparse_csr", "torch.sparse_csc", "torch.sparse_bsr", "torch.sparse_bsc")


def check_device_X(X, *, xp, estimator, reset: bool, what="X"):
    """Shape, dtype and finiteness checks for X held by a non-NumPy library.

    torch's compressed sparse layouts come back as COO: batches are rows taken
    with ``index_select``, which torch has for COO only (CSR failed deep inside torch).
    """
    if str(getattr(X, "layout", "")) in _TORCH_COMPRESSED:
        X = X.to_sparse_coo()
    if is_sparse_tensor(X) and X.sparse_dim() != X.ndim:
        X = X.to_dense()  # hybrid COO (dense rows under a sparse first axis): no sparse product takes it
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: {what} has shape {tuple(X.shape)}. "
            "Reshape your data either using X.reshape(-1, 1) if your data has a "
            "single feature or X.reshape(1, -1) if it contains a single sample."
        )
    n_samples, n_features = X.shape
    if n_samples < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if n_features < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    X = _as_float(X, xp=xp, what=what)
    check_finite(X, xp=xp, what=what)
    # scikit-learn's own step: a tensor has no column names, so a fit forgets those of an
    # earlier fit, and a model fitted with names warns as it does for any nameless X.
    _check_feature_names(estimator, X, reset=reset)
    if reset:
        estimator.n_features_in_ = n_features
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return X


def _as_float(a, *, xp, what):
    if xp.isdtype(a.dtype, "real floating"):
        return a
    if xp.isdtype(a.dtype, ("integral", "bool")):
        return xp.astype(a, float_dtype(xp, device_of(a)))
    raise ValueError(f"{what} must hold real numbers; got dtype {a.dtype} ({backend_name(xp)}).")


# The exact finiteness check works through X in blocks of at most this many values.
FINITE_CHECK_BLOCK = 2**22


def check_finite(a, *, xp, what):
    """Raise scikit-learn's error if ``a`` holds NaN or inf; one boolean read when it does not.

    ``isfinite`` over all of X is a temporary as large as X (torch builds it
    from ``abs`` and two comparisons: 1.7x the size of X), so first the sum,
    which is finite whenever every value is, unless it overflows; only a
    non-finite sum leads to the exact check, block by block. Skipped under
    scikit-learn's ``assume_finite``, as its own check is: on a GPU that
    saves the host a wait for the device at every call.
    """
    if sklearn.get_config()["assume_finite"]:
        return
    if is_sparse_tensor(a):
        a = a.coalesce().values() if a.layout is sys.modules["torch"].sparse_coo else a.values()
    with np.errstate(over="ignore", invalid="ignore"):  # NumPy-backed namespaces warn on overflow
        if bool(to_host(xp.isfinite(xp.sum(a)))):
            return
    row_size = math.prod(a.shape[1:])
    rows = max(1, FINITE_CHECK_BLOCK // max(row_size, 1))
    for start in range(0, a.shape[0], rows):
        block = a[start:min(start + rows, a.shape[0]), ...]  # in-bounds stops: strict requires them
        if not bool(to_host(xp.all(xp.isfinite(block)))):
            has_nan = bool(to_host(xp.any(xp.isnan(block))))
            raise ValueError(f"Input {what} contains {'NaN' if has_nan else 'infinity'}.")


def refuse_sparse(a, what):
    """y and sample_weight are dense: a sparse tensor would fail deep inside torch."""
    if is_sparse_tensor(a):
        raise ValueError(f"{what} is a sparse torch tensor ({a.layout}); pass a dense one ({what}.to_dense()).")


def check_device_target(y, n_samples, *, xp):
    """A regression target held by a non-NumPy library: 1-D or 2-D, numeric, finite."""
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1D or 2D; got shape {tuple(y.shape)}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, {y.shape[0]}]"
        )
    y = _as_float(y, xp=xp, what="y")
    check_finite(y, xp=xp, what="y")
    return y


def check_sample_weight(sample_weight, X, *, xp=None):
    """scikit-learn's checks (1-D, length, all-zero) plus finite and non-negative.

    Returns a host NumPy float64 array for host weights, or the device array
    for device weights, or None.
    """
    if sample_weight is None:
        return None
    if is_device_array(sample_weight):  # (dense: targets_beside_X refused sparse tensors)
        sw = _as_float(sample_weight, xp=xp, what="sample_weight")
        if sw.ndim == 0:  # one weight for every sample, as scikit-learn takes a scalar
            # (times ones, not xp.full: the standard's full takes a Python scalar only, and
            # reading the weight back would cost a device sync)
            sw = sw * xp.ones((X.shape[0],), dtype=sw.dtype, device=device_of(sw))
        if sw.ndim != 1 or sw.shape[0] != X.shape[0]:
            raise ValueError(f"sample_weight.shape == {tuple(sw.shape)}, expected ({X.shape[0]},)!")
        check_finite(sw, xp=xp, what="sample_weight")
        host_summary = to_host(xp.stack([xp.min(sw), xp.max(sw)]))
        _check_weight_values(*host_summary)
        return sw
    if isinstance(sample_weight, (list, tuple)) and _plain_numbers(sample_weight):
        # Under array_api_dispatch scikit-learn moves weights to X's library, and its move
        # takes arrays only. Real numbers only: anything else keeps scikit-learn's own error
        # (and so do ints too big for int64, which NumPy keeps as objects).
        as_array = np.asarray(sample_weight)
        if as_array.dtype.kind in "biuf":
            sample_weight = as_array
    # scikit-learn's own check refuses NaN and inf already, with its messages.
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


def _plain_numbers(values) -> bool:
    """A flat list of Python or NumPy real numbers (no strings, no nested or ragged lists)."""
    return all(isinstance(v, (int, float, np.integer, np.floating)) for v in values)


def _check_weight_values(smallest, largest):
    if smallest < 0:
        raise ValueError("Negative values in data passed to `sample_weight`.")
    if largest == 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
