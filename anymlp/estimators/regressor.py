"""MLPRegressor: scikit-learn's regressor, computed on any array namespace."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from anymlp._backend import input_namespace, to_host, to_namespace_of
from anymlp.estimators._validation import check_device_target
from anymlp.estimators.base import BaseMLP, host_copy


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor, scikit-learn's ``MLPRegressor`` on any backend.

    Parameters are those of ``sklearn.neural_network.MLPRegressor`` 1.9.1 (``loss``
    first), with the same defaults, plus ``backend``, ``device`` and
    ``callbacks`` as in :class:`anymlp.MLPClassifier`.

    ``loss="squared_error"`` is half the squared error *summed* over outputs
    (scikit-learn averages it in ``loss_`` but its gradient is of the sum);
    ``loss="poisson"`` needs ``y >= 0``.
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
        device=None,
        callbacks=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.callbacks = callbacks

    _is_classifier = False

    def _loss_name(self) -> str:
        return self.loss

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_dtype(self, model_dtype, y_dtype, weights_dtype):
        """scikit-learn's: its loss promotes the predictions (the model's dtype) with y as
        given and with the weights (float32 kept, anything else made float64), NumPy's
        way. So a float32 model fit on float32 y has float32 losses, and integer y or
        float64 weights give float64."""
        dtypes = [model_dtype, y_dtype]
        if weights_dtype is not None:
            dtypes.append(np.float32 if weights_dtype == np.float32 else np.float64)
        try:
            promoted = np.result_type(*dtypes)
        except TypeError:
            promoted = np.dtype(np.float64)
        return np.dtype(np.float32 if promoted == np.float32 else np.float64)

    # ------------------------------------------------------------------ targets

    def _validate_device_target(self, y, n_samples, *, xp):
        return check_device_target(y, n_samples, xp=xp)

    def _encode_target(self, y, incremental):
        """Y as 2-D (n, n_targets), on the host or the device, and no host labels."""
        Y = y[:, None] if y.ndim == 1 else y
        if self.loss == "poisson":
            self._check_non_negative(Y)
        return Y, None

    def _check_non_negative(self, Y):
        smallest = float(np.min(Y) if isinstance(Y, np.ndarray) else to_host(input_namespace(Y)[0].min(Y)))
        if smallest < 0:
            raise ValueError(
                "loss='poisson' requires y >= 0 (it models counts or rates); "
                f"y has a minimum of {smallest}."
            )

    def _stratify_labels(self, y_host):
        return None

    def _validation_target(self, y_host, data, val_idx):
        Y = to_host(data.Y)[val_idx]
        return Y[:, 0] if Y.shape[1] == 1 else Y

    def _score_predictions(self, y_true, y_pred, sample_weight):
        if not np.all(np.isfinite(y_pred)):
            return np.nan
        if _plain_targets(y_true, y_pred, sample_weight):
            return _r2(y_true, y_pred, sample_weight)
        return r2_score(y_true, y_pred, sample_weight=sample_weight)

    # ------------------------------------------------------------------ prediction

    def _outputs_to_predictions(self, P, xp):
        return P[:, 0] if P.shape[1] == 1 else P

    def predict(self, X):
        """Predictions (n,) for one target, else (n, n_targets), in X's namespace."""
        X, backend, theta, (out_xp, out_device) = self._validate_predict_X(X)
        xp = backend.xp
        return to_namespace_of(self._outputs_to_predictions(self._forward(X, theta, xp), xp), out_xp, out_device)

    def score(self, X, y, sample_weight=None):
        """R² averaged uniformly over targets, as a Python float."""
        y_pred = host_copy(self.predict(X))
        return float(r2_score(host_copy(y), y_pred, sample_weight=host_copy(sample_weight)))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y). Not available for ``solver='lbfgs'``."""
        with self._fit_context(partial_fit=True):
            return self._fit(X, y, sample_weight, incremental=True)


def _plain_targets(y_true, y_pred, sample_weight) -> bool:
    """Host float arrays of one dtype and shape, at least two rows, weights not all zero:
    nothing for r2_score to convert or refuse."""
    arrays = [a for a in (y_true, y_pred, sample_weight) if a is not None]
    return (all(isinstance(a, np.ndarray) and a.dtype == y_true.dtype for a in arrays)
            and y_true.dtype in (np.float32, np.float64) and y_pred.shape == y_true.shape
            and y_true.ndim in (1, 2) and y_true.shape[0] >= 2
            and (sample_weight is None or (sample_weight.shape == y_true.shape[:1] and np.any(sample_weight))))


def _r2(y_true, y_pred, sample_weight) -> float:
    """``r2_score(y_true, y_pred, sample_weight)`` for plain targets, computed as it computes it.

    Early stopping scores every epoch, and r2_score's target checks took
    ~0.36 ms a call. Past them: the same sums over the same (n, n_outputs)
    arrays, perfect outputs scoring 1 and constant targets 0, averaged over outputs.
    """
    if y_true.ndim == 1:
        y_true, y_pred = y_true.reshape(-1, 1), y_pred.reshape(-1, 1)
    weight = 1.0 if sample_weight is None else sample_weight[:, None]
    numerator = np.sum(weight * (y_true - y_pred) ** 2, axis=0)
    denominator = np.sum(weight * (y_true - np.average(y_true, axis=0, weights=sample_weight)) ** 2, axis=0)
    scores = np.ones(y_true.shape[1], dtype=numerator.dtype)
    valid = (denominator != 0) & (numerator != 0)
    scores[valid] = 1 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & (denominator == 0)] = 0.0
    return float(np.average(scores))
