"""Which array library computes, on which device, and the only way across host and device.

Layer 0. Nothing here knows about networks or scikit-learn. CuPy and torch are
imported only when the user asks for them or hands us their arrays, so
``import anymlp`` stays light (a test checks it).

Every move of data from a device to the host goes through :func:`to_host`, so a
test can count the crossings and catch a per-batch synchronisation.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import scipy.special

BACKENDS = ("numpy", "cupy", "torch", "array_api_strict")

_PIP_HINTS = {
    "cupy": "pip install 'anymlp[cuda12]' (or 'anymlp[cuda13]' for CUDA 13)",
    "torch": "pip install 'anymlp[torch]'",
    "array_api_strict": "pip install array-api-strict",
}


class BackendUnavailableError(ImportError, ValueError):
    """The requested backend or device does not exist on this machine.

    It is both an ImportError (a library is missing) and a ValueError (a bad
    parameter value), so either ``except`` catches it.
    """


# --------------------------------------------------------------------------
# Global configuration: estimator parameter > set_config/config_context > env > input.

_config = threading.local()


def _config_stack():
    if not hasattr(_config, "stack"):
        _config.stack = [{}]
    return _config.stack


class _Unset:
    """The default of set_config's and config_context's arguments: "leave this setting as it is"."""

    def __repr__(self):
        return "<unchanged>"  # what help(set_config) shows


_UNSET = _Unset()
_ENV = {
    "backend": "ANYMLP_BACKEND",
    "device": "ANYMLP_DEVICE",
    "fit_memory_budget": "ANYMLP_FIT_MEMORY_BUDGET",
    "kernels": "ANYMLP_KERNELS",
    "flush_denormals": "ANYMLP_FLUSH_DENORMALS",
}
_ENV_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False}
KERNELS = ("auto", "numba", "array_api")


def get_config() -> dict:
    """The global settings; None means "follow the input" (backend, device) or "no limit".

    ``fit_memory_budget`` is in bytes: training data larger than that stays on
    the host and each batch is sent to the device as it is needed.
    ``kernels`` is "auto" (fused NumPy loops for fits long enough to repay
    loading numba), "numba" (fused loops for every NumPy fit) or "array_api"
    (the portable reference code everywhere). Both "auto" and "numba" give
    torch tensors torch's fused in-place ops. ``flush_denormals`` (default
    False) makes fits on the CPU treat subnormal floats as zero: see
    :func:`set_config`.
    """
    return {key: setting(key) for key in _ENV}


def setting(key: str):
    """``get_config()[key]`` alone: cheap enough for every batch and every small predict.

    The innermost ``set_config``/``config_context`` value wins (None there
    means "no setting" and overrides the environment), then the environment.
    """
    for layer in reversed(_config_stack()):
        value = layer.get(key, _UNSET)
        if value is not _UNSET:
            break
    else:
        value = os.environ.get(_ENV[key]) or None
        if key == "fit_memory_budget" and value is not None:
            value = _env_bytes(key, value)
        if key == "flush_denormals" and value is not None:
            value = _env_boolean(key, value)
    if key == "kernels":
        return value or "auto"
    if key == "flush_denormals":
        return bool(value)
    return value


def _env_bytes(key: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{_ENV[key]}={text!r} is not a positive number of bytes; write it out, "
                         "e.g. 2e9 for 2 GB.")
    return int(value)


def _env_boolean(key: str, text: str) -> bool:
    try:
        return _ENV_BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{_ENV[key]}={text!r} is not a yes/no value; use 1 or 0.") from None


def fused_kernels_allowed() -> bool:
    """``get_config()["kernels"] != "array_api"``, asked several times a training step.

    A fit puts its kernels setting in the innermost layer (``_compute_settings``),
    so that layer answers at once; elsewhere :func:`setting` looks further.
    """
    stack = getattr(_config, "stack", None)
    value = _UNSET if stack is None else stack[-1].get("kernels", _UNSET)
    if value is _UNSET:
        return setting("kernels") != "array_api"
    return value != "array_api"  # (None: "auto")


def _checked(**settings) -> dict:
    backend, budget, kernels, flush = (
        settings.get(k, _UNSET) for k in ("backend", "fit_memory_budget", "kernels", "flush_denormals"))
    if backend not in (_UNSET, None):
        _check_backend_name(backend)
    if budget not in (_UNSET, None) and not (
            isinstance(budget, (int, float, np.integer, np.floating)) and not isinstance(budget, bool)
            and budget > 0 and math.isfinite(budget)):
        raise ValueError(f"fit_memory_budget must be a positive number of bytes or None; got {budget!r}.")
    if kernels not in (_UNSET, None) and kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}; got {kernels!r}.")
    if flush is not _UNSET and flush is not None:
        if not isinstance(flush, (bool, np.bool_)):
            raise ValueError(f"flush_denormals must be True, False or None; got {flush!r}.")
        settings["flush_denormals"] = bool(flush)
    return settings


def set_config(backend=_UNSET, device=_UNSET, fit_memory_budget=_UNSET, kernels=_UNSET,
               flush_denormals=_UNSET) -> None:
    """Set global defaults; arguments left out keep their value. None clears a setting,
    ``ANYMLP_*`` environment variable included: "no setting" (follow the input, no limit).

    ``backend``/``device`` choose where estimators compute NumPy input (an
    estimator's own parameters win over them); ``fit_memory_budget`` (bytes)
    makes larger training sets stream from the host batch by batch;
    ``kernels="array_api"`` turns the fused steps off (to rule them out when
    debugging: on NumPy the weights are bitwise the same; on torch each step
    agrees to a few units in the last place, and trained weights drift apart
    as under any reordering of float operations) and ``kernels="numba"`` uses the NumPy loops
    even for small fits.

    ``flush_denormals=True`` makes each fit on the NumPy backend run with the
    CPU's flush-to-zero and denormals-are-zero modes on in the fitting thread
    (x86-64; for torch on the CPU, ``torch.set_flush_denormal``). Long
    float32 fits on inputs with always-zero features and an L2 penalty (MNIST's
    border pixels) drive the Adam moments of those weights below the smallest
    normal float, and every operation on such a value costs ~100x a normal
    one: epochs 12-15 of a (100,) MNIST fit took 1.5x as long as epochs 2-3
    (scikit-learn's moments reach the same values). Flushing keeps them flat. Off by default because it changes
    results: values that would be subnormal (below 1.2e-38 in float32,
    2.2e-308 in float64) become 0, so the weights stop matching
    scikit-learn's to the bit once such values appear; predictions do not
    move in practice. Callbacks run with the modes on, and so does a fit
    inside another's callback whatever its own setting (False means "leave
    the modes alone"); threads started during the fit keep them. numba sets
    the register (it loads once per process, ~0.5 s).

    As in scikit-learn, the settings belong to the calling thread, and a call
    inside :func:`config_context` takes effect at once and lasts until that
    context exits.
    """
    settings = _checked(backend=backend, device=device, fit_memory_budget=fit_memory_budget, kernels=kernels,
                        flush_denormals=flush_denormals)
    _config_stack()[-1].update({k: v for k, v in settings.items() if v is not _UNSET})


@contextlib.contextmanager
def config_context(*, backend=_UNSET, device=_UNSET, fit_memory_budget=_UNSET, kernels=_UNSET,
                   flush_denormals=_UNSET):
    """Temporarily change the settings of :func:`set_config`."""
    stack = _config_stack()
    stack.append(_checked(backend=backend, device=device, fit_memory_budget=fit_memory_budget, kernels=kernels,
                          flush_denormals=flush_denormals))
    try:
        yield
    finally:
        stack.pop()


def _check_backend_name(name):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}.")


# --------------------------------------------------------------------------
# Namespaces


def _import(name: str):
    """Import an optional array library, or explain how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend={name!r} was requested but {name} is not installed ({exc}). "
            f"Install it with: {_PIP_HINTS.get(name, 'pip install ' + name)}"
        ) from None


def namespace_by_name(name: str):
    """The array-API-compatible namespace for a backend name."""
    if name == "numpy":
        return _numpy_namespace()
    _check_backend_name(name)
    if name == "array_api_strict":
        return _import("array_api_strict")
    module = _import(name)
    if name == "cupy":
        _check_cuda_for_cupy(module)
    return array_api_compat.array_namespace(module.empty(0))


@functools.cache
def _numpy_namespace():
    """array-api-compat's NumPy namespace, found once (every predict asks for it)."""
    return array_api_compat.array_namespace(np.empty(0))


def _check_cuda_for_cupy(cupy):
    try:
        usable = cupy.is_available()
    except Exception:  # noqa: BLE001 - any driver failure means "not usable"
        usable = False
    if not usable:
        raise BackendUnavailableError(
            "backend='cupy' was requested but no CUDA device is usable: CuPy is "
            "installed, but cupy.is_available() is False. Check the NVIDIA driver "
            "(nvidia-smi) and CUDA_VISIBLE_DEVICES, or use backend='numpy'."
        )


def is_numpy_namespace(xp) -> bool:
    return array_api_compat.is_numpy_namespace(xp)


def backend_name(xp) -> str:
    """The name under which :data:`BACKENDS` knows ``xp``."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", "unknown")


def loaded_torch():
    """The torch module if it is imported and ready, else None, without importing it.

    Not ``sys.modules["torch"]`` as such: another thread may be half-way through
    importing torch (a first ``backend="torch"`` fit in a thread pool, ~1-2 s), and
    ``sys.modules["torch"] = None`` is how a program blocks it. A NumPy-only fit or
    predict must work through both; no tensor can exist before torch is ready.
    """
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch


def is_tensor(x) -> bool:
    """A torch tensor (any device or layout); never imports torch, never fails on a torch
    being imported or blocked (unlike array-api-compat's ``is_torch_array``)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, getattr(torch, "Tensor", ()))


def is_device_array(x) -> bool:
    """True for arrays of a non-NumPy array-API library (torch, CuPy, strict...)."""
    if x is None or isinstance(x, (np.ndarray, np.generic)):
        return False
    return hasattr(x, "__array_namespace__") or is_tensor(x)


def input_namespace(*arrays):
    """Namespace and device of user arrays; NumPy for lists, pandas, sparse and NumPy.

    Raises a plain ValueError when arrays come from different libraries or devices, or
    hold no data (torch's "meta" device).
    """
    device_arrays = [a for a in arrays if is_device_array(a)]
    if not device_arrays:
        return namespace_by_name("numpy"), None
    try:
        xp = array_api_compat.array_namespace(*device_arrays)
    except TypeError:
        names = sorted({type(a).__module__.split(".")[0] for a in device_arrays})
        raise ValueError(
            f"X, y and sample_weight must come from one array library; got {', '.join(names)}. "
            "Convert them to the same library first."
        ) from None
    devices = {repr(array_api_compat.device(a)) for a in device_arrays}
    if len(devices) > 1:
        raise ValueError(
            f"X, y and sample_weight must be on the same device; got {', '.join(sorted(devices))}."
        )
    device = array_api_compat.device(device_arrays[0])
    if getattr(device, "type", None) == "meta":
        raise ValueError("Got a tensor on torch's 'meta' device, which holds shapes but no values; "
                         "move the data to 'cpu' or 'cuda' first.")
    return xp, device


# --------------------------------------------------------------------------
# Devices


def _parse_device(xp, device):
    """Turn a user's device spelling into the namespace's device object."""
    if device is None:
        return None
    name = backend_name(xp)
    if name == "numpy":
        if str(device) != "cpu":
            raise BackendUnavailableError(
                f"device={device!r} needs a GPU backend; NumPy only computes on 'cpu'. "
                "Use backend='cupy' or backend='torch' with a CUDA device."
            )
        return "cpu"
    if name == "torch":
        return _torch_device(device)
    if name == "cupy":
        return _cupy_device(device)
    if name == "array_api_strict":
        return _strict_device(xp, device)
    return device


def device_spelling(device) -> str:
    """A device object as ``device=`` spells it ('cuda:0', 'cpu', 'device1'): what
    :func:`_parse_device` reads back, kept where the object itself cannot go (a pickle
    that must load without the library)."""
    if hasattr(device, "id") and type(device).__module__.startswith("cupy"):
        return f"cuda:{device.id}"
    strict = re.fullmatch(r"array_api_strict\.Device\('(.+)'\)", str(device))
    return strict.group(1) if strict else str(device)


def _strict_device(xp, device):
    if isinstance(device, xp.Device):
        return device
    if device == "cpu":
        return xp.Device("CPU_DEVICE")  # array_api_strict's own CPU
    try:
        if not isinstance(device, str):
            raise ValueError
        return xp.Device(device)
    except ValueError:
        raise ValueError(
            f"device={device!r} is not an array_api_strict device; use 'cpu' (its 'CPU_DEVICE'), "
            "'device1' or 'device2'."
        ) from None


def _torch_device(device):
    import torch

    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}"  # as torch reads a bare index, and as CuPy does here
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device={device!r}: give a device name such as 'cuda', 'cuda:1' or 'cpu'.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"device={device!r} is not a device name torch knows; use 'cpu', 'cuda', 'cuda:N', "
            "'mps', or another torch device type."
        ) from None
    if dev.type not in ("cpu", "cuda") and not _torch_device_type_available(torch, dev.type):
        raise BackendUnavailableError(
            f"device={str(device)!r} was requested but torch {torch.__version__} cannot compute "
            f"on {dev.type!r} devices here. Use device='cpu', or a CUDA device where there is one."
        )
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= count:
            raise BackendUnavailableError(
                f"device={str(device)!r} was requested but torch sees {count} CUDA "
                f"device(s) (torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
                "Install a CUDA build of torch, check nvidia-smi and CUDA_VISIBLE_DEVICES, "
                "or use device='cpu'."
            )
        if dev.index is None:
            # "cuda" means the current device *when used*: pinned now, so parameters placed
            # at fit time and inputs moved later agree after a torch.cuda.set_device().
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _torch_device_type_available(torch, device_type: str) -> bool:
    """Can this torch compute on ``device_type`` (mps, xpu, ...)? 'meta' holds no data: no.
    A type with no ``is_available`` to ask (a plug-in backend: xla, privateuseone) is let
    through; torch itself then says whether it works."""
    if device_type == "meta":
        return False
    if device_type == "mps":
        return torch.backends.mps.is_available()
    module = getattr(torch, device_type, None)
    is_available = getattr(module, "is_available", None)
    return bool(is_available()) if callable(is_available) else True


def _cupy_device(device):
    import cupy

    text = str(device)
    if text == "cpu":
        raise BackendUnavailableError("backend='cupy' computes on a CUDA device, not 'cpu'.")
    index = int(text.split(":", 1)[1]) if ":" in text else 0
    count = cupy.cuda.runtime.getDeviceCount()
    if index >= count:
        raise BackendUnavailableError(
            f"device={text!r} was requested but CuPy sees {count} CUDA device(s)."
        )
    return cupy.cuda.Device(index)


# --------------------------------------------------------------------------
# Where computation happens


@dataclass(frozen=True)
class Backend:
    """The namespace and device one fit or predict computes on."""

    xp: Any
    device: Any

    @property
    def name(self) -> str:
        return backend_name(self.xp)

    def describe(self) -> str:
        return f"{self.name} on {self.device if self.device is not None else 'cpu'}"


def resolve_backend(*arrays, backend=None, device=None) -> Backend:
    """Choose where to compute, from the estimator's parameters, the config and the input.

    Order: the estimator's ``backend``/``device`` > :func:`set_config`/env > the
    input's own namespace. ``device="cuda..."`` alone picks CuPy when it is
    installed and torch otherwise.
    """
    if backend is None and device is None:
        backend, device = setting("backend"), setting("device")
    input_xp, input_device = input_namespace(*arrays)
    if backend is None and device is not None and is_numpy_namespace(input_xp):
        backend = _backend_for_device(device)
    if backend is None:
        if device is None:
            return Backend(input_xp, input_device)
        return Backend(input_xp, _parse_device(input_xp, device))
    xp = namespace_by_name(backend)
    if backend_name(xp) == backend_name(input_xp):
        if device is None:
            return Backend(input_xp, input_device)
    return Backend(xp, _parse_device(xp, device) if device is not None else _default_device(xp))


def _backend_for_device(device) -> str:
    library = type(device).__module__.split(".")[0]
    if library in ("torch", "cupy", "array_api_strict"):
        return library  # a device object (torch.device, ...) names its library
    text = str(device)
    if text == "cpu":
        return "numpy"
    if text.startswith("cuda"):
        try:
            importlib.import_module("cupy")
            return "cupy"
        except ImportError:
            pass
        try:
            importlib.import_module("torch")
            return "torch"
        except ImportError:
            raise BackendUnavailableError(
                f"device={text!r} needs CuPy or a CUDA build of torch, and neither is "
                f"installed. Install one: {_PIP_HINTS['cupy']}, or {_PIP_HINTS['torch']}."
            ) from None
    if text.startswith("device") or text == "CPU_DEVICE":
        return "array_api_strict"
    return "torch"  # mps, xpu, ...: torch's device strings


def _default_device(xp):
    name = backend_name(xp)
    if name == "cupy":
        import cupy

        return cupy.cuda.Device()
    if name == "torch":
        import torch

        return torch.device("cpu")
    if name == "array_api_strict":
        return xp.Device("CPU_DEVICE")
    return None


def host_dtype(dtype) -> np.dtype:
    """The NumPy float dtype named like ``dtype``, a float dtype of any namespace."""
    if isinstance(dtype, np.dtype):  # the common case, without formatting a name (~1 us a predict)
        return _FLOAT32 if dtype == _FLOAT32 else _FLOAT64
    return _FLOAT32 if "float32" in str(dtype) else _FLOAT64


_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)


def supports_float64(backend: "Backend") -> bool:
    """False on devices without double precision (torch MPS, strict's 'no_float64')."""
    return "float64" in str(float_dtype(backend.xp, backend.device))


def float_dtype(xp, device, dtype=None):
    """``dtype`` if given, else the widest float the device supports."""
    if dtype is not None:
        return dtype
    try:
        dtypes = xp.__array_namespace_info__().dtypes(device=device, kind="real floating")
        return dtypes.get("float64", xp.float32)
    except (AttributeError, TypeError):
        return xp.float64


# --------------------------------------------------------------------------
# Crossings


class _OneBlasThread:
    """``with one_blas_thread():`` runs BLAS on one thread, safely across concurrent fits.

    threadpoolctl's ``threadpool_limits`` changes a process-wide setting and
    restores what it found on exit; two fits overlapping in threads would
    restore each other's limit and could leave the process on one thread for
    good. Here the first anymlp fit in saves and limits, the last one out
    restores. (A fit that wants the default threads while another holds the
    limit runs on one thread.) This orders anymlp's own fits only: other code
    calling ``threadpool_limits`` meanwhile can still change the setting.

    Finding the BLAS libraries costs ~1 ms, a lot for a small ``partial_fit``,
    so the list is made at first use and kept: NumPy's BLAS is loaded with
    NumPy, before anymlp, and a BLAS loaded later is not limited.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: list = []
        self._libraries = None

    def _blas_libraries(self):
        if self._libraries is None:
            from threadpoolctl import ThreadpoolController

            self._libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        return self._libraries

    def _limit(self):
        if self._saved:  # a restore that Ctrl-C cut short between two libraries: finish it first
            self._restore()
        try:
            for lib in self._blas_libraries():
                threads = lib.get_num_threads()
                if threads is not None:
                    self._saved.append((lib, threads))  # first: an interrupt after the set still restores
                    lib.set_num_threads(1)
        except BaseException:
            self._restore()  # a library that failed half-way must not keep the others at one
            raise

    def _restore(self):
        """Every library back to its saved count, even through Ctrl-C: one left on one thread
        would stay so for the rest of the process (the next fit saves that 1 as the default).
        An entry leaves ``_saved`` only once its library is done, so an interrupt between two
        libraries leaves the rest for the next ``_limit``."""
        first_error = None
        while self._saved:
            lib, threads = self._saved[-1]
            for _ in range(3):  # a Ctrl-C inside the call may land before the count is set
                try:
                    lib.set_num_threads(threads)
                    break
                except KeyboardInterrupt as interrupt:
                    first_error = first_error or interrupt
                except Exception as error:  # noqa: BLE001 - a library that refuses: the others still go back
                    first_error = first_error or error
                    break
            self._saved.pop()
        if first_error is not None:
            raise first_error

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._holders == 0:
                self._limit()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._restore()


one_blas_thread = _OneBlasThread()


def clip(x, low: float, high: float, *, xp):
    """``xp.clip(x, low, high)`` with scalar bounds, as one elementwise pass on every library.

    array-api-compat 1.16 writes clip for CuPy with boolean-mask assignments:
    each mask costs a device-to-host sync, so a log-loss per batch would wait
    on the GPU twice per batch. Its NumPy version is also 4x slower than
    ``np.clip`` at batch size. The libraries' own clip keeps ``x``'s float
    dtype with scalar bounds and computes the same values, so that one is used.
    """
    if array_api_compat.is_numpy_namespace(xp):
        return np.clip(x, low, high)
    if array_api_compat.is_cupy_namespace(xp):
        return sys.modules["cupy"].clip(x, low, high)
    return xp.clip(x, low, high)


def zeroed_where_zero(z, delta, *, xp):
    """``xp.where(z == 0, 0.0, delta)``, bit for bit: the ReLU derivative; may overwrite ``delta``.

    On NumPy, ``where`` with a data-dependent mask is branchy: at (200, 100)
    it takes ~110 us, a quarter of a small network's training step when
    numba is not loaded (scikit-learn's ``delta[z == 0] = 0`` as much). Here
    delta's bits are ANDed with a mask of all ones where ``z != 0`` and of
    zeros elsewhere: the same +0.0 where ``z`` is 0 or -0.0, delta's own
    bits (NaN and signed zeros included) elsewhere, NaN in ``z`` included,
    in ~15 us.
    """
    if (array_api_compat.is_numpy_namespace(xp) and type(delta) is np.ndarray and delta.flags.writeable
            and delta.dtype.kind == "f" and delta.dtype.itemsize in (2, 4, 8) and delta.shape == z.shape):
        bits = np.dtype(f"i{delta.dtype.itemsize}")
        mask = (z != 0).astype(bits)  # 1 where kept
        np.negative(mask, out=mask)  # -1: every bit set
        np.bitwise_and(delta.view(bits), mask, out=delta.view(bits))
        return delta
    return xp.where(z == 0, 0.0, delta)


# The ufunc expit uses on NumPy, for code that writes the result over its own array (out=).
numpy_expit = scipy.special.expit


def expit(z, *, xp):
    """The logistic function ``1 / (1 + exp(-z))``, without overflow warnings, by the library's own.

    On NumPy, SciPy's ``expit``, which scikit-learn uses: NumPy's ``exp`` differs
    from the one inside it in the last bit for ~2% of inputs, and L-BFGS
    magnifies such differences. torch: ``torch.sigmoid``, one launch. Elsewhere
    the standard's operations, arranged so ``exp`` never overflows.
    """
    if array_api_compat.is_numpy_namespace(xp):
        return numpy_expit(z)
    if array_api_compat.is_torch_namespace(xp):
        return sys.modules["torch"].sigmoid(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _release(version: str) -> tuple[int, ...]:
    """``"1.16.0rc1"`` -> ``(1, 16, 0)``: the leading numbers of a version string."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


# SciPy's float32 xlogy computed x * log(y) in double and rounded once up to 1.15; from
# 1.16 on it takes float32's log and a float32 product, which a fused loss can copy bit for bit.
XLOGY_FLOAT32_IN_FLOAT32 = _release(scipy.__version__) >= (1, 16)


def xlogy(x, y, *, xp, y_positive=False):
    """``x * log(y)``, and 0 where ``x == 0``: what scikit-learn's losses compute.

    On NumPy, SciPy's ``xlogy``, which scikit-learn uses: NumPy's ``log``
    differs from the one inside it in the last bit for some inputs (0.4% in
    float64, 22% in float32). Elsewhere the standard's operations; with
    ``y_positive`` (clipped probabilities) log(y) is finite, so two operations
    do, else ``log(0)`` is kept out of the product.
    """
    if array_api_compat.is_numpy_namespace(xp):
        return scipy.special.xlogy(x, y)
    if y_positive:
        return x * xp.log(y)
    return xp.where(x == 0, 0.0, x * xp.log(xp.where(x == 0, 1.0, y)))


def squared_norm(w, *, xp):
    """``xp.vecdot(w, w)`` of a 1-D array, through the library's own dot product on torch.

    array-api-compat 1.16 computes torch's vecdot as a (1, n) @ (n, 1) matrix
    product: for the 670k weights of a (512, 512) network that took 3.7 ms
    (``torch.dot``: 20 us), a third of a CPU training step, and its float32
    sum was off by 7e-5 relative (``torch.dot``: 7e-8). ``torch.dot``, not
    ``torch.linalg.vecdot``: the latter runs ``vdot``, which MPS lacks before
    torch 2.11.
    """
    if array_api_compat.is_torch_namespace(xp):
        return sys.modules["torch"].dot(w, w)
    if array_api_compat.is_cupy_namespace(xp):
        # CuPy (14.2) has no vecdot, and array-api-compat's stand-in conjugates a copy of
        # the weights first, then multiplies (1, n) by (n, 1). The standard's 1-D @ 1-D is
        # the inner product itself: no copy. Not yet timed on a GPU.
        return w @ w
    return xp.vecdot(w, w)


def is_sparse_tensor(x) -> bool:
    """A torch tensor in a sparse layout (COO, CSR, CSC, BSR, BSC)."""
    return is_tensor(x) and x.layout is not sys.modules["torch"].strided


def sparse_tensor_to_scipy(x):
    """A 2-D sparse torch tensor as a SciPy CSR matrix on the host, for the NumPy backend
    (which computes with SciPy's sparse matrices) or to be densified for another library."""
    import scipy.sparse

    coo = x.detach().to_sparse_coo().coalesce().cpu()
    if coo.sparse_dim() != 2:  # hybrid: dense rows under a sparse first axis
        return scipy.sparse.csr_matrix(coo.to_dense().numpy())
    rows, cols = coo.indices().numpy()
    return scipy.sparse.csr_matrix((coo.values().numpy(), (rows, cols)), shape=tuple(coo.shape))


def to_host(x) -> np.ndarray:
    """Copy a device array to a NumPy array (a no-op for NumPy). Counted by tests."""
    if x is None or isinstance(x, (np.ndarray, np.generic)):
        return x
    if is_tensor(x):
        x = x.detach().cpu()
        if x.dtype is sys.modules["torch"].bfloat16:
            x = x.float()  # NumPy has no bfloat16; float32 holds each value exactly
        return x.numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(x)):
        xp = array_api_compat.array_namespace(x)
        return np.from_dlpack(x.to_device(xp.Device("CPU_DEVICE")))
    return np.from_dlpack(x)


def to_device(x, backend: Backend, dtype=None):
    """Move (and maybe cast) one array to ``backend``; a no-op when it is already there."""
    if x is None:
        return None
    xp, device = backend.xp, backend.device
    if is_tensor(x) and x.requires_grad:
        x = x.detach()  # anymlp computes its own gradients; an autograd graph would only grow
    if is_device_array(x) and backend_name(array_api_compat.array_namespace(x)) != backend.name:
        x = to_host(x)  # between two device libraries: go through the host once
    if isinstance(x, np.ndarray) and not is_numpy_namespace(xp):
        if dtype is not None:  # cast on the host: the device may not hold x's dtype at all
            x = x.astype(host_dtype(dtype), copy=False)
        with warnings.catch_warnings():
            # torch warns that a read-only NumPy array may be written through the tensor;
            # anymlp never writes to the user's data.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = xp.asarray(x, device=device)
    elif device is not None and not is_numpy_namespace(xp) and not _same_device(x, device):
        x = array_api_compat.to_device(x, device)
    if dtype is not None and x.dtype != dtype:
        x = xp.astype(x, dtype)
    return x


def _same_device(x, device) -> bool:
    return repr(array_api_compat.device(x)) == repr(device)


def to_namespace_of(x, like_xp, like_device):
    """Bring a result back to the namespace and device the user passed in."""
    if is_numpy_namespace(like_xp):
        return to_host(x)
    return to_device(x, Backend(like_xp, like_device))


def device_of(x):
    return array_api_compat.device(x)


# --------------------------------------------------------------------------
# What is installed (for ``python -m anymlp info``)


def available_backends() -> dict:
    """Installed array libraries and their versions (None when missing), without importing them twice."""
    from importlib import metadata

    found = {}
    for name, dist in [("numpy", "numpy"), ("cupy", None), ("torch", "torch"), ("array_api_strict", "array-api-strict")]:
        dists = [dist] if dist else ["cupy-cuda12x", "cupy-cuda13x", "cupy"]
        found[name] = None
        for candidate in dists:
            try:
                found[name] = metadata.version(candidate)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def gpu_info() -> list[dict]:
    """Usable CUDA GPUs as ``{"name", "memory_bytes", "library"}``; empty without one."""
    gpus = []
    if available_backends()["cupy"]:
        try:
            import cupy

            for index in range(cupy.cuda.runtime.getDeviceCount()):
                props = cupy.cuda.runtime.getDeviceProperties(index)
                gpus.append({"name": props["name"].decode(), "memory_bytes": props["totalGlobalMem"], "library": "cupy"})
            return gpus
        except Exception:  # noqa: BLE001 - no driver, no device: report none
            gpus = []
    if "torch" in sys.modules or available_backends()["torch"]:
        try:
            import torch

            for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
                props = torch.cuda.get_device_properties(index)
                gpus.append({"name": props.name, "memory_bytes": props.total_memory, "library": "torch"})
        except Exception:  # noqa: BLE001
            pass
    return gpus
