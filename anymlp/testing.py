"""Tools for tests and benchmarks: count the array operations a piece of code launches.

On a GPU every elementwise operation, reduction or matrix product is at least
one kernel launch, and at batch sizes like 200 the launches, not the FLOPs,
set the pace. Counting them on array_api_strict (which runs anywhere) shows
how many a training step needs, and whether the count grows with depth.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter

# Operations that move no data on a GPU: views, metadata, dtype queries.
_FREE = {
    "reshape", "isdtype", "finfo", "iinfo", "result_type", "can_cast", "__array_namespace_info__",
    "Device", "astype_no_copy",
}
_DUNDERS = {
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
    "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "__matmul__", "__pow__", "__neg__",
    "__abs__", "__eq__", "__gt__", "__ge__", "__lt__", "__le__", "__setitem__",
}


@contextlib.contextmanager
def count_array_ops(xp):
    """Count calls of ``xp``'s functions and of its arrays' operators inside the block.

    ``xp`` must be a module whose functions the code looks up at call time,
    such as ``array_api_strict``. Yields a Counter keyed by operation name.
    Views (reshape, slicing) and metadata queries are not counted.
    """
    counts: Counter = Counter()
    array_type = type(xp.asarray([0.0]))
    patched = []

    def counting(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in dir(xp):
        value = getattr(xp, name)
        if callable(value) and not name.startswith("_") and not isinstance(value, type) and name not in _FREE:
            patched.append((xp, name, value))
    for name in _DUNDERS:
        if hasattr(array_type, name):
            patched.append((array_type, name, getattr(array_type, name)))
    try:
        for owner, name, value in patched:
            setattr(owner, name, counting(name, value))
        yield counts
    finally:
        for owner, name, value in patched:
            setattr(owner, name, value)


# Aten operations that launch no kernel: views, metadata, allocation without a fill.
_TORCH_FREE = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "detach"}


@contextlib.contextmanager
def count_torch_ops():
    """Count the aten operations torch dispatches inside the block (kernel launches on CUDA).

    Views (``is_view``) and bare allocations are not counted. A host sync
    (``.item()``, ``float(t)``, ``bool(t)``) shows up as ``_local_scalar_dense``.
    Yields a Counter keyed by operation name.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter = Counter()

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if not func.is_view and name not in _TORCH_FREE:
                counts[name] += 1
            return func(*args, **(kwargs or {}))

    with Counting():
        yield counts
