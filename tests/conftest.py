"""Backends as fixtures, so a failure names the namespace it happened on."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from anymlp._backend import to_host


@pytest.fixture(autouse=True)
def _no_anymlp_environment(monkeypatch):
    """Tests start from the defaults, whatever ANYMLP_* the developer's shell sets, and leave
    no set_config behind (a set_config(backend=None) overrides the environment after it)."""
    from anymlp._backend import _ENV, _config_stack

    for variable in _ENV.values():
        monkeypatch.delenv(variable, raising=False)
    stack = _config_stack()
    saved = [dict(layer) for layer in stack]
    yield
    stack[:] = saved


def _cuda_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:  # noqa: BLE001
        return False


@dataclass
class ArrayBackend:
    """How a test hands data to anymlp and reads results back."""

    id: str
    xp: Any
    device: Any
    dtype_name: str | None = None  # force this float dtype on X
    readonly: bool = False

    def asarray(self, a):
        """Convert a NumPy array (X, y or weights) to this backend."""
        a = np.asarray(a)
        if self.dtype_name is not None and a.dtype.kind == "f":
            a = a.astype(self.dtype_name)
        if self.xp is None:
            a = a.copy()
            a.setflags(write=not self.readonly)
            return a
        return self.xp.asarray(a, device=self.device)

    @staticmethod
    def numpy(a):
        return to_host(a)

    def is_own(self, a) -> bool:
        """Is ``a`` an array of this backend, on its device?"""
        if self.xp is None:
            return isinstance(a, np.ndarray)
        from array_api_compat import array_namespace, device

        same_ns = array_namespace(a).__name__.split(".")[-1] == self.xp.__name__.split(".")[-1]
        return same_ns and repr(device(a)) == repr(self.device)


def _make_backend(name: str) -> ArrayBackend:
    if name == "numpy":
        return ArrayBackend("numpy", None, None)
    if name == "numpy-readonly":
        return ArrayBackend("numpy-readonly", None, None, readonly=True)
    if name.startswith("array_api_strict"):
        xps = pytest.importorskip("array_api_strict")
        dtype = "float32" if name.endswith("float32") else None
        return ArrayBackend(name, xps, xps.Device("device1"), dtype_name=dtype)
    if name == "torch":
        torch = pytest.importorskip("torch")
        return ArrayBackend("torch", torch, torch.device("cpu"))
    if name == "cupy":
        if not _cuda_available():
            pytest.skip("cupy backend needs CuPy and a CUDA GPU")
        import cupy

        return ArrayBackend("cupy", cupy, cupy.cuda.Device(0))
    raise ValueError(name)


ALL_BACKENDS = ["numpy", "numpy-readonly", "array_api_strict", "array_api_strict-float32", "torch", "cupy"]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request) -> ArrayBackend:
    """Every namespace the suite runs on; cupy is skipped without a GPU."""
    return _make_backend(request.param)


@pytest.fixture(params=["array_api_strict", "torch", "cupy"])
def device_backend(request) -> ArrayBackend:
    """Only the non-NumPy namespaces."""
    return _make_backend(request.param)


def targets_for_loss(loss: str, rng, rows: int, dtype) -> np.ndarray:
    """Training targets that ``loss`` takes, 2-D as the network's output: one-hot rows of 4
    classes, a 0/1 column, Poisson counts in 2 columns, or 3 real columns (squared error)."""
    if loss == "log_loss":
        return np.eye(4, dtype=dtype)[rng.integers(0, 4, rows)]
    if loss == "binary_log_loss":
        return rng.integers(0, 2, (rows, 1)).astype(dtype)
    if loss == "poisson":
        return rng.poisson(2.0, (rows, 2)).astype(dtype)
    return rng.standard_normal((rows, 3)).astype(dtype)
