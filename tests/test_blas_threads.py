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
    default = _blas_threads()
    MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch_size, max_iter=1, callbacks=[spy]).fit(X, y)
    assert _blas_threads() == default  # given back after the fit
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


class FakeBlas:
    """A BLAS thread setting that records what every thread saw while it held the limit."""

    def __init__(self, threads=2, fail_on_set=False):
        self.threads = threads
        self.fail_on_set = fail_on_set

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, threads):
        if self.fail_on_set:
            raise OSError("cannot set the thread count")
        self.threads = threads


@pytest.fixture
def fake_limiter():
    from anymlp._backend import _OneBlasThread

    limiter = _OneBlasThread()
    limiter._libraries = [FakeBlas(), FakeBlas(threads=None), FakeBlas(threads=8)]
    return limiter


def test_concurrent_fits_hold_one_thread_and_the_last_out_restores(fake_limiter):
    """Sixteen threads enter and leave in overlapping, shuffled order (a barrier lines them up).
    Every one sees one thread inside, and the defaults come back once all are out; a
    save/restore per fit would have let a late exit restore another fit's "1"."""
    import random
    import threading
    import time

    blas, no_setting, eight = fake_limiter._libraries
    start = threading.Barrier(16)
    seen = []

    def fit(seed):
        start.wait()
        time.sleep(random.Random(seed).random() / 100)
        with fake_limiter():
            seen.append((blas.threads, eight.threads))
            time.sleep(random.Random(-seed).random() / 100)
            seen.append((blas.threads, eight.threads))

    workers = [threading.Thread(target=fit, args=(seed,)) for seed in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen == [(1, 1)] * 32
    assert (blas.threads, no_setting.threads, eight.threads) == (2, None, 8)


def test_a_library_that_refuses_the_limit_leaves_the_others_as_they_were(fake_limiter):
    fake_limiter._libraries.append(FakeBlas(threads=4, fail_on_set=True))
    with pytest.raises(OSError, match="cannot set"):
        with fake_limiter():
            pass
    assert [lib.threads for lib in fake_limiter._libraries] == [2, None, 8, 4]
    assert fake_limiter._holders == 0



def test_ctrl_c_while_the_counts_go_back_still_restores_every_library(fake_limiter):
    """A KeyboardInterrupt from the second library's restore (Ctrl-C landing in threadpoolctl):
    it still propagates, and no library is left on one thread."""
    blas, no_setting, eight = fake_limiter._libraries
    set_eight = eight.set_num_threads
    interrupts = [KeyboardInterrupt()]

    def interrupted_once(threads):
        if threads > 1 and interrupts:
            raise interrupts.pop()
        set_eight(threads)

    eight.set_num_threads = interrupted_once
    with pytest.raises(KeyboardInterrupt):
        with fake_limiter():
            assert (blas.threads, eight.threads) == (1, 1)
    assert (blas.threads, no_setting.threads, eight.threads) == (2, None, 8)
    with fake_limiter():  # and the next fit saves the true defaults
        pass
    assert (blas.threads, eight.threads) == (2, 8)


def test_a_library_that_keeps_interrupting_its_restore_does_not_hang_the_limiter(fake_limiter):
    blas, no_setting, eight = fake_limiter._libraries
    calls = []

    def always_interrupted(threads):
        calls.append(threads)
        if threads > 1:
            raise KeyboardInterrupt

    eight.set_num_threads = always_interrupted
    with pytest.raises(KeyboardInterrupt):
        with fake_limiter():
            pass
    assert calls == [1, 8, 8, 8] and blas.threads == 2  # three tries, and the others still go back
    assert fake_limiter._holders == 0 and not fake_limiter._lock.locked()


def test_a_restore_cut_between_two_libraries_is_finished_by_the_next_fit(fake_limiter):
    blas, no_setting, eight = fake_limiter._libraries
    with fake_limiter():
        pass
    fake_limiter._limit()
    fake_limiter._saved.pop()  # as if Ctrl-C came after the last library's restore, before blas's
    eight.set_num_threads(8)
    assert blas.threads == 1 and fake_limiter._saved == [(blas, 2)]
    with fake_limiter():
        assert (blas.threads, eight.threads) == (1, 1)
    assert (blas.threads, eight.threads) == (2, 8)

def test_one_blas_thread_nests_and_restores(two_blas_threads):
    from anymlp._backend import one_blas_thread

    with one_blas_thread():
        assert _blas_threads() == {1}
        with one_blas_thread():
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}
    assert _blas_threads() == {2}
