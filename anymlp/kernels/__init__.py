"""Fused loops for the hot elementwise steps of training, where a namespace has them.

Each step (the Adam and SGD updates, the end of the gradient, bias + ReLU,
the ReLU derivative, the output softmax) is written once against the array
API next to the code that uses it; that version is the reference and runs on
every namespace. On NumPy, several passes of array operations with a
temporary each are memory bound (the Adam update over a (512, 512) network
made a dozen passes over 670k parameters per batch), so :func:`fused_for`
offers loops compiled by numba that do the same arithmetic in one pass,
bitwise equal to the reference.

numba is imported on first use, not with anymlp (~0.5 s and ~100 MB once per
process; the estimators decide when a fit is worth it). When it is missing or
cannot load, or ``set_config(kernels="array_api")`` is set, everything runs
on the reference code.
"""

from __future__ import annotations

import numpy as np

from anymlp._backend import fused_kernels_allowed

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_numba_module = None
_numba_missing = False


def fused_for(written, *read):
    """The numba kernels if they can update ``written`` in place from ``read``, else None.

    Every array must be a C-contiguous NumPy array of the same float dtype
    (so the loop's arithmetic is the dtype NumPy would use), and ``written``
    must be writable.
    """
    if not (type(written) is np.ndarray and written.dtype in _FLOATS and written.flags.writeable):
        return None
    if not written.flags.c_contiguous:
        return None
    for a in read:
        if type(a) is not np.ndarray or a.dtype != written.dtype or not a.flags.c_contiguous:
            return None
    if not fused_kernels_allowed():
        return None
    return _numba_kernels()


def fused_kernels_loaded() -> bool:
    """Has numba been loaded (by an earlier fit or a test)? Then using it costs nothing more."""
    return _numba_module is not None


def _numba_kernels():
    global _numba_module, _numba_missing
    if _numba_module is None and not _numba_missing:
        try:
            from anymlp.kernels import _numba
        except Exception:  # noqa: BLE001 - no numba wheel, or no writable cache directory
            _numba_missing = True  # (numba raises RuntimeError then): the reference code runs
        else:
            _numba_module = _numba
    return _numba_module


def scalar(value, like):
    """``value`` as a scalar of ``like``'s dtype, as NumPy casts a Python scalar."""
    return like.dtype.type(value)
