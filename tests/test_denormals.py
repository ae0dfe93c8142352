"""``flush_denormals``: subnormal floats read and written as zero during a fit, and only then.

Subnormal values (below ``np.finfo(dtype).tiny``) cost ~100 times a normal
operation on x86-64. A long Adam fit with always-zero input features and an
L2 penalty drives the moments of those weights there (MNIST's border pixels:
epochs 12-15 took 1.5x as long as epochs 2-3). The setting turns the CPU's flush-to-zero
and denormals-are-zero modes on for the fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import anymlp
from anymlp import MLPClassifier
from anymlp.kernels import _numba_kernels, denormals_flushed

kernels = _numba_kernels()
needs_flush = pytest.mark.skipif(kernels is None or not kernels.FLUSH_SUPPORTED,
                                 reason="flushing subnormals needs an x86-64 CPU and numba")

SUBNORMAL = np.float32(1e-39)  # made outside any flushed block, so it really is subnormal
SMALL_NORMAL = np.float32(2e-38)


def _subnormal_quotient() -> np.float32:
    """2e-38 / 10: the subnormal 2e-39 in IEEE arithmetic, 0 with flush-to-zero on."""
    return SMALL_NORMAL / np.float32(10)


def _flushed_arithmetic() -> tuple[np.float32, np.float32]:
    """``(subnormal input * 1e10, subnormal result)``: 0 and 0 with DAZ and FTZ on, not 0 without.

    The caller compares them outside any flushed block: under DAZ a comparison
    would itself read a subnormal as 0.
    """
    return SUBNORMAL * np.float32(1e10), _subnormal_quotient()


def _count_subnormal(a) -> int:
    a = np.asarray(a)
    return int(np.sum((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


def _zero_feature_problem():
    """Three always-zero features: with alpha, Adam shrinks their weights and moments geometrically."""
    rng = np.random.default_rng(0)
    X = rng.random((100, 6)).astype(np.float32)
    X[:, :3] = 0
    return X, (X[:, 3] > 0.5).astype(int)


def _fit(X, y, *, flush, **params):
    params = {"hidden_layer_sizes": (5,), "learning_rate_init": 1e-2, "batch_size": 10, "max_iter": 200,
              "tol": 0, "random_state": 0, **params}
    estimator = MLPClassifier(**params)
    with anymlp.config_context(kernels="numba", flush_denormals=flush), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


def _subnormals_in_state(estimator) -> int:
    state = estimator._optimizer.state
    return sum(_count_subnormal(a) for a in (estimator._theta, state.m, state.v))


def test_setting_defaults_to_off_and_checks_its_values(monkeypatch):
    assert anymlp.get_config()["flush_denormals"] is False
    with pytest.raises(ValueError, match="flush_denormals must be True, False or None; got 'yes'"):
        anymlp.set_config(flush_denormals="yes")
    monkeypatch.setenv("ANYMLP_FLUSH_DENORMALS", "on")
    assert anymlp.get_config()["flush_denormals"] is True
    with anymlp.config_context(flush_denormals=None):  # None: the default, over the environment
        assert anymlp.get_config()["flush_denormals"] is False
    monkeypatch.setenv("ANYMLP_FLUSH_DENORMALS", "sometimes")
    with pytest.raises(ValueError, match="ANYMLP_FLUSH_DENORMALS='sometimes' is not a yes/no value"):
        anymlp.get_config()


@needs_flush
def test_the_modes_hold_inside_the_block_only():
    before = _flushed_arithmetic()
    with denormals_flushed():
        inside = _flushed_arithmetic()
        tiny64 = np.float64(1e-300) * 1e-10
    after = _flushed_arithmetic()
    assert inside == (0, 0) and tiny64 == 0  # DAZ and FTZ, each on its own
    assert before == after and before[0] != 0 and before[1] != 0


@needs_flush
@pytest.mark.parametrize("when", ["before", "during"])
def test_the_rest_of_the_register_is_left_as_the_thread_set_it(when):
    """Only the two modes go back: a rounding mode set before the fit, or during it, stays."""
    toward_zero = 0x6000  # MXCSR's rounding-control bits: round toward zero
    status_flags = 0x3F  # sticky, and cleared by NumPy itself

    class SetsRounding:
        def on_fit_begin(self, estimator, **kwargs):
            kernels.swap_mxcsr_bits(toward_zero, toward_zero)

    saved = kernels.swap_mxcsr_bits(0, 0)
    try:
        if when == "before":
            kernels.swap_mxcsr_bits(toward_zero, toward_zero)
        X, y = _zero_feature_problem()
        _fit(X, y, flush=True, max_iter=2, callbacks=[SetsRounding()] if when == "during" else None)
        assert kernels.swap_mxcsr_bits(0, 0) & ~status_flags == (saved | toward_zero) & ~status_flags
    finally:
        kernels.swap_mxcsr_bits(toward_zero, saved)


@needs_flush
def test_the_modes_come_back_as_they_were_even_when_already_on():
    saved = kernels.swap_mxcsr_bits(kernels.FTZ_DAZ, kernels.FTZ_DAZ)
    try:
        with denormals_flushed():
            pass
        assert _subnormal_quotient() == 0  # still on: they were on before the block
    finally:
        kernels.swap_mxcsr_bits(kernels.FTZ_DAZ, saved)
    assert kernels.swap_mxcsr_bits(0, 0) & kernels.FTZ_DAZ == saved & kernels.FTZ_DAZ


def test_no_support_is_said_not_hidden(monkeypatch):
    monkeypatch.setattr("anymlp.kernels._numba_kernels", lambda: None)
    with pytest.warns(UserWarning, match="flush_denormals=True has no effect here"):
        with denormals_flushed():
            pass


@needs_flush
def test_a_long_fit_keeps_no_subnormal_values_and_predicts_the_same():
    X, y = _zero_feature_problem()
    exact, flushed = _fit(X, y, flush=False), _fit(X, y, flush=True)
    assert _subnormals_in_state(exact) > 0  # the problem does reach them (and stays scikit-learn's)
    assert _subnormals_in_state(flushed) == 0
    np.testing.assert_array_equal(flushed.predict(X), exact.predict(X))
    np.testing.assert_allclose(flushed.predict_proba(X), exact.predict_proba(X), rtol=1e-6, atol=1e-30)
    assert _subnormal_quotient() != 0  # the fit gave the modes back


@needs_flush
def test_without_subnormal_values_flushing_changes_no_bit():
    X, y = _zero_feature_problem()
    X[:, :3] = 0.5  # no always-zero features: nothing gets near the subnormal range
    exact, flushed = _fit(X, y, flush=False, max_iter=20), _fit(X, y, flush=True, max_iter=20)
    assert _subnormals_in_state(exact) == 0
    np.testing.assert_array_equal(flushed._theta, exact._theta)
    assert flushed.loss_curve_ == exact.loss_curve_


@needs_flush
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_the_modes_come_back_when_a_fit_fails(solver):
    class Failing:
        def on_epoch_end(self, estimator, record):
            assert _subnormal_quotient() == 0  # inside the fit: flushed
            raise RuntimeError("stop")

    X, y = _zero_feature_problem()
    with pytest.raises(RuntimeError, match="stop"):
        _fit(X, y, flush=True, solver=solver, callbacks=[Failing()])
    assert _subnormal_quotient() != 0


def test_the_setting_takes_booleans_only():
    for value in (True, np.True_, False):
        with anymlp.config_context(flush_denormals=value):
            assert anymlp.get_config()["flush_denormals"] is bool(value)
    for value in (1, "1", np.array([True]), 2.0):
        with pytest.raises(ValueError, match="flush_denormals must be True, False or None"):
            anymlp.set_config(flush_denormals=value)


@needs_flush
def test_other_backends_leave_the_register_alone(monkeypatch):
    """torch starts its thread pool lazily: threads started in a flushed fit would keep the modes."""
    torch = pytest.importorskip("torch")
    import anymlp.estimators.base as base

    entered = []
    monkeypatch.setattr(base, "denormals_flushed", lambda: entered.append(1) or denormals_flushed())
    X, y = _zero_feature_problem()
    _fit(torch.asarray(X), torch.asarray(y), flush=True, max_iter=2)
    assert entered == []
    _fit(X, y, flush=True, max_iter=2)
    assert entered == [1]


@needs_flush
def test_flushing_reaches_the_reference_code_too():
    """The modes belong to the thread, not to the fused kernels: NumPy's own passes flush as well."""
    X, y = _zero_feature_problem()
    with anymlp.config_context(kernels="array_api", flush_denormals=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = MLPClassifier(hidden_layer_sizes=(5,), learning_rate_init=1e-2, batch_size=10, max_iter=200,
                                  tol=0, random_state=0).fit(X, y)
    assert _subnormals_in_state(estimator) == 0
