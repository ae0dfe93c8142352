"""BLAS threads during a NumPy fit: one for small or elementwise-heavy networks, the default otherwise."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from anymlp import MLPClassifier


class BlasThreadsSeen:
    def __init__(self):
        self.seen = set()

    def on_batch_end(self, estimator, **info):
        self.seen |= {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def _threads_during_fit(n_features, hidden, batch_size, n_samples=400):
    rng = np.random.default_rng(0)
    X, y = rng.random((n_samples, n_features)), rng.integers(0, 10, n_samples)
    spy = BlasThreadsSeen()
    MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch_size, max_iter=1, callbacks=[spy]).fit(X, y)
    return spy.seen


@pytest.fixture
def two_blas_threads():
    if not any(p["user_api"] == "blas" for p in threadpool_info()):
        pytest.skip("NumPy reports no BLAS thread pool")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mnist_sized_products_keep_the_default_threads(two_blas_threads):
    # 200 x 784 x 100 = 15.7M multiply-adds per product, ~720 per activation value.
    assert _threads_during_fit(784, (100,), 200) == {2}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_features, hidden, batch_size", [
    (64, (64,), 400),  # digits-like: big enough, but only 64 multiply-adds per activation value
    (784, (100,), 10),  # products too small to split
])
def test_small_or_elementwise_heavy_fits_use_one_thread(two_blas_threads, n_features, hidden, batch_size):
    assert _threads_during_fit(n_features, hidden, batch_size) == {1}


def _blas_threads():
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_overlapping_limits_give_the_threads_back(two_blas_threads):
    """Fits in threads overlap as: A starts, B starts, A ends, B ends. B keeps its one thread
    until it ends, and the default comes back after both (a save/restore per fit would have
    restored A's "1" last).

    Driven from the main thread: OpenBLAS ignores thread counts set from other threads
    once the main thread has set one.
    """
    from contextlib import ExitStack

    from anymlp._backend import one_blas_thread

    a, b = ExitStack(), ExitStack()
    a.enter_context(one_blas_thread())
    b.enter_context(one_blas_thread())
    a.close()
    assert _blas_threads() == {1}
    b.close()
    assert _blas_threads() == {2}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_concurrent_small_fits_in_threads_leave_the_default_threads(two_blas_threads):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    X, y = rng.random((100, 8)), rng.integers(0, 3, 100)
    fit = lambda seed: MLPClassifier((4,), max_iter=3, random_state=seed).fit(X, y).n_iter_  # noqa: E731
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(fit, range(16))) == [3] * 16
    assert _blas_threads() == {2}


def test_one_blas_thread_nests_and_restores(two_blas_threads):
    from anymlp._backend import one_blas_thread

    with one_blas_thread():
        assert _blas_threads() == {1}
        with one_blas_thread():
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}
    assert _blas_threads() == {2}
