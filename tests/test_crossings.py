"""Device-to-host reads during fit grow with epochs, never with batches."""

import warnings

import numpy as np
import pytest

import anymlp._backend as backend_module
from anymlp import MLPClassifier


def _count_host_reads(monkeypatch):
    calls = []
    original = backend_module.to_host

    def counting(x):
        if x is not None and not isinstance(x, (np.ndarray, np.generic)):
            calls.append(getattr(x, "shape", None))
        return original(x)

    # Every module that imported to_host reads it through its own name.
    import anymlp.estimators._validation as validation
    import anymlp.estimators.base as base
    import anymlp.estimators.classifier as classifier
    import anymlp.training.lbfgs as lbfgs
    import anymlp.training.stochastic as stochastic

    for module in (backend_module, base, classifier, validation, stochastic, lbfgs):
        monkeypatch.setattr(module, "to_host", counting)
    return calls


def _reads_for(monkeypatch, device_backend, batch_size, early_stopping=False, epochs=3):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 6))
    y = (X[:, 0] > 0).astype(int)
    calls = _count_host_reads(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier((8,), batch_size=batch_size, max_iter=epochs, random_state=0,
                      early_stopping=early_stopping, n_iter_no_change=100).fit(
            device_backend.asarray(X), device_backend.asarray(y))
    monkeypatch.undo()
    return len(calls)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_host_reads_do_not_grow_with_batches(monkeypatch, device_backend, early_stopping):
    few_batches = _reads_for(monkeypatch, device_backend, 200, early_stopping)
    many_batches = _reads_for(monkeypatch, device_backend, 10, early_stopping)
    assert few_batches == many_batches


def test_host_reads_per_epoch_are_constant(monkeypatch, device_backend):
    three = _reads_for(monkeypatch, device_backend, 50, epochs=3)
    six = _reads_for(monkeypatch, device_backend, 50, epochs=6)
    # One read per epoch (the summed loss and a finiteness probe, in one array).
    assert six - three == 3
