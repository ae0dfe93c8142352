"""Fused loops for the hot elementwise steps of training, where a namespace has them.

Each step (the Adam and SGD updates, the end of the gradient, bias + ReLU,
the ReLU derivative, the output softmax with the log loss, the bias
gradients as column sums on the way) is written once against the array
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

On torch tensors (any device) :func:`fused_for` offers torch's own compound
in-place operations instead (:mod:`anymlp.kernels._torch`): fewer kernel
launches per step, equal to the reference to a few units in the last place.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

import numpy as np

from anymlp._backend import fused_kernels_allowed, is_tensor

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_numba_module = None
_numba_missing = False
_torch_module = None


def fused_for(written, *read):
    """The fused kernels that can update ``written`` in place from ``read``, or None.

    NumPy: every array a C-contiguous NumPy array of the same float dtype (so
    the loop's arithmetic is the dtype NumPy would use), ``written`` writable;
    the numba kernels. torch: contiguous tensors of one float dtype on one
    device; the torch kernels.

    Asked about ten times a training step, so it is written for speed: on a
    GPU, or on the CPU with a small network, the step's Python is a good part
    of its time.
    """
    if type(written) is np.ndarray:
        dtype = written.dtype
        if not (dtype in _FLOATS and written.flags.writeable and written.flags.c_contiguous):
            return None
        for a in read:
            if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
                return None
        return (_numba_module or _numba_kernels()) if fused_kernels_allowed() else None
    if is_tensor(written) and _same_torch_layout(written, read):
        return _torch_kernels() if fused_kernels_allowed() else None
    return None


def affine_kernels_for(a, W, b):
    """Kernels with a one-launch ``affine(a, W, b) = a @ W + b`` (torch's addmm), or None.

    W and b as for :func:`fused_for`; ``a`` may have any strides (addmm takes
    them), but one dtype and device with W, and no autograd. NumPy has no
    such kernel, and asking must not load numba.
    """
    if type(W) is np.ndarray or not is_tensor(W):  # (NumPy first: asked twice a layer and step)
        return None
    fused = fused_for(W, b)
    if fused is None or not (is_tensor(a) and a.dtype == W.dtype and a.device == W.device
                             and not a.requires_grad):
        return None
    return fused


def _same_torch_layout(written, read) -> bool:
    """Contiguous (so ``reshape(-1)`` is a view), one float dtype, one device, no autograd.

    Tensors that require grad (code differentiating through the passes) take
    the reference: out= variants and in-place updates of leaves cannot be
    recorded by autograd.
    """
    if not (written.is_floating_point() and written.is_contiguous()) or written.requires_grad:
        return False
    dtype, device = written.dtype, written.device
    tensor = sys.modules["torch"].Tensor  # (written is one: torch is loaded)
    for a in read:
        if not (isinstance(a, tensor) and a.dtype == dtype and a.device == device and a.is_contiguous()) or a.requires_grad:
            return False
    return True


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


@contextlib.contextmanager
def denormals_flushed():
    """Flush-to-zero and denormals-are-zero on in the calling thread for the block.

    Afterwards both modes are as they were before, and the rest of the
    thread's floating-point state as the block left it. The modes live in
    the x86-64 MXCSR register, which Python cannot reach: numba's
    compiled code sets it. Threads started inside the block copy the
    register and keep the modes. Elsewhere (another CPU, no numba, a numba
    that cannot compile it) a warning says the setting has no effect.
    """
    kernels = _numba_kernels()
    saved = None
    if kernels is not None and kernels.FLUSH_SUPPORTED:
        try:
            saved = kernels.swap_mxcsr_bits(kernels.FTZ_DAZ, kernels.FTZ_DAZ)
        except Exception:  # noqa: BLE001 - numba failed to compile the register access: saved stays None
            pass
    if saved is None:
        warnings.warn("flush_denormals=True has no effect here: it needs an x86-64 CPU and numba.")
        yield
        return
    try:
        yield
    finally:
        kernels.swap_mxcsr_bits(kernels.FTZ_DAZ, saved)


def _torch_kernels():
    global _torch_module
    if _torch_module is None:
        from anymlp.kernels import _torch  # torch is imported already: the tensors are its

        _torch_module = _torch
    return _torch_module


def flat(a):
    """``a`` as a 1-D view for the elementwise kernels: ``a`` itself when it is 1-D already,
    as the optimizer's arrays are (a reshape costs ~1 us a call on torch, four a step)."""
    return a if a.ndim == 1 else a.reshape(-1)


def scalar(value, like):
    """``value`` as a scalar of ``like``'s dtype, as NumPy casts a Python scalar.

    torch casts Python numbers (and 0-d tensors, such as a sum of sample
    weights, which must stay on the device) itself, so they pass through.
    """
    if isinstance(like, np.ndarray):
        return like.dtype.type(value)
    return value


def scalars(values, like) -> tuple:
    """``tuple(scalar(v, like) for v in values)``, for the optimizers' constants at each step:
    ~0.15 us a value against ~0.7 through :func:`scalar`."""
    if isinstance(like, np.ndarray):
        cast = like.dtype.type
        return tuple([cast(v) for v in values])
    return tuple(values)
