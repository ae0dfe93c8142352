"""What MLPClassifier and MLPRegressor share: scikit-learn's contract around the math.

The estimator validates, encodes labels, picks the backend, moves data once,
and hands the numbers to :mod:`anymlp.training`. It keeps the parameters as one
flat vector ``_theta`` on the compute device; ``coefs_`` and ``intercepts_``
are views of it, returned in the namespace of the data the user passed in.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import config_context as sklearn_config_context
from sklearn import get_config as get_sklearn_config
from sklearn.base import BaseEstimator
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, column_or_1d

from anymlp import __version__
from anymlp._backend import (
    BACKENDS,
    BackendUnavailableError,
    Backend,
    backend_name,
    config_context,
    device_of,
    device_spelling,
    setting,
    host_dtype,
    supports_float64,
    input_namespace,
    is_device_array,
    is_numpy_namespace,
    is_sparse_tensor,
    is_tensor,
    loaded_torch,
    namespace_by_name,
    one_blas_thread,
    resolve_backend,
    sparse_tensor_to_scipy,
    to_device,
    to_host,
    to_namespace_of,
)
from anymlp.estimators._validation import (
    check_device_X, check_sample_weight, targets_beside_X, validate_host_fit_data,
    validate_predict_host_X,
)
from anymlp.exceptions import IncompatibleModelError, NonFiniteTrainingError
from anymlp.kernels import denormals_flushed, fused_kernels_loaded
from anymlp.nn import Architecture, Layout, StepWorkspace, forward, glorot_uniform, loss_and_grad, unpack
from anymlp.optim.stateful import AdamOptimizer, SGDOptimizer
from anymlp.training import History, LoopSettings, TrainingData, fit_lbfgs, fit_stochastic, split_validation
from anymlp.training.lbfgs import streamed_loss_and_grad
from anymlp.training.callbacks import check_callbacks, notify
from anymlp.training.stochastic import take_rows

_STOCHASTIC_SOLVERS = ("sgd", "adam")

# When a second BLAS thread pays (NumPy backend), see BaseMLP._blas_threads: the largest
# product has at least SMALL_GEMM_MACS multiply-adds, and the network does at least
# MIN_GEMM_INTENSITY multiply-adds per activation value it computes elementwise.
SMALL_GEMM_MACS = 2_000_000
MIN_GEMM_INTENSITY = 200

# Fits with less work (samples x parameters x epochs) than this do not load numba
# (BaseMLP._compute_settings). Digits L-BFGS (1797 x 4810 x 200 = 1.7e9) loads it: 0.46 s
# on the reference code, 0.33 s fused, plus ~0.5 s once per process for the import.
FUSED_KERNELS_MIN_WORK = 1e9

# predict/predict_proba work through X in chunks whose activations take at most this much.
PREDICT_CHUNK_BYTES = 64 * 2**20

# Fitted attributes only the sgd/adam loop records (an L-BFGS fit drops them).
_STOCHASTIC_RECORDS = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")

# The fitted attributes that are the sgd/adam loop's state, with their History fields. As in
# scikit-learn, a warm fit or partial_fit goes on from them: a user who sets best_loss_ =
# np.inf, clears loss_curve_ or sets t_ (which drives the invscaling rate) changes what follows.
_STATE_ATTRIBUTES = {"t_": "t", "loss_curve_": "loss_curve", "best_loss_": "best_loss",
                     "validation_scores_": "validation_scores", "best_validation_score_": "best_validation_score",
                     "_no_improvement_count": "no_improvement_count"}

# Pickles record the format; loading refuses formats this version cannot read.
_PICKLE_FORMAT = 1


class BaseMLP(BaseEstimator):
    """Shared machinery; use :class:`MLPClassifier` or :class:`MLPRegressor`."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions(set(BACKENDS)), None],
        "device": "no_validation",
        "callbacks": [list, tuple, None],
    }

    # ------------------------------------------------------------------ fitted parameters

    @property
    def coefs_(self):
        """Weight matrices ``(fan_in, fan_out)``, in the namespace of the fit input.

        As in scikit-learn, ``coefs_[i] = W`` and ``coefs_ = [...]`` change the
        model, and a list fetched before a later fit no longer does. On NumPy
        (and for torch or array-API input) the arrays are views of the
        parameters, so in-place edits (``coefs_[0][:] = 0``) do too; arrays
        copied off a GPU are copies.
        """
        return _ParameterList(self._public_params()[0], self._layer_writer("coefs"))

    @coefs_.setter
    def coefs_(self, coefs):
        self._set_public_params(coefs, self.intercepts_)

    @property
    def intercepts_(self):
        """Bias vectors ``(fan_out,)``, in the namespace of the fit input (see ``coefs_``)."""
        return _ParameterList(self._public_params()[1], self._layer_writer("intercepts"))

    @intercepts_.setter
    def intercepts_(self, intercepts):
        self._set_public_params(self.coefs_, intercepts)

    def _public_params(self):
        if not hasattr(self, "_theta"):
            raise AttributeError(f"{type(self).__name__} has no coefs_ before fit.")
        xp = self._backend.xp
        coefs, intercepts = unpack(self._theta, self._arch.layout, xp=xp)
        out_xp, out_device = self._output_namespace
        convert = lambda a: to_namespace_of(a, out_xp, out_device)  # noqa: E731
        return [convert(c) for c in coefs], [convert(b) for b in intercepts]

    def _set_public_params(self, coefs, intercepts):
        layout = self._arch.layout
        expected = [shape for kind in ("coefs", "intercepts") for _, _, shape in _layer_spans(layout, kind)]
        given = [tuple(a.shape) for a in list(coefs) + list(intercepts)]
        if given != expected:
            raise ValueError(
                f"coefs_ and intercepts_ must keep the fitted shapes {expected}; got {given}. "
                "Fit again to change the architecture."
            )
        xp = self._backend.xp
        flat = [xp.reshape(to_device(a, self._backend, self._theta.dtype), (-1,)) for a in list(coefs) + list(intercepts)]
        self._theta = xp.concat(flat)
        self._predict_cache = None

    def _layer_writer(self, kind: str):
        """``write(positions, arrays)`` for a ``coefs_``/``intercepts_`` list fetched now.

        It writes into the parameters in place, so the other arrays handed out
        stay views of the model; once a fit has replaced the parameters, the
        list is the user's own, as scikit-learn's old lists are.
        """
        origin = self._theta

        def write(positions, arrays):
            nonlocal origin
            if self._theta is not origin:
                return
            # Loaded read-only (joblib's mmap_mode="r"): the model takes a copy of its own,
            # which this list keeps writing to.
            self._theta = origin = _writable(origin)
            spans, xp = _layer_spans(self._arch.layout, kind), self._backend.xp
            given = [tuple(a.shape) for a in arrays]
            expected = [spans[i][2] for i in positions]
            if given != expected:
                raise ValueError(
                    f"{kind}_ must keep the fitted shapes: {kind}_{list(positions)} are {expected}; got "
                    f"{given}. Fit again to change the architecture."
                )
            for i, array in zip(positions, arrays):
                a, b, _ = spans[i]
                self._theta[a:b] = xp.reshape(to_device(array, self._backend, self._theta.dtype), (-1,))
            self._predict_cache = None

        return write

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            NumPy, pandas, scipy sparse (NumPy path), or any array-API array
            (CuPy, torch, ...), which is computed on where it lives.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        with self._fit_context(partial_fit=False):
            return self._fit(X, y, sample_weight, incremental=False)

    @contextlib.contextmanager
    def _fit_context(self, partial_fit: bool):
        """Parameter checks as scikit-learn's ``_fit_context`` does them.

        The parameters are validated unless ``sklearn.set_config(
        skip_parameter_validation=True)`` says not to, or this is a
        ``partial_fit`` of a fitted model (~190 us of a ~2.5 ms call on 200
        rows). Inside, the scikit-learn functions a fit calls skip their own
        parameter checks (label_binarize, train_test_split, the scorers).
        """
        if get_sklearn_config()["skip_parameter_validation"]:
            pass
        elif partial_fit and self.__sklearn_is_fitted__():
            # anymlp's own parameter: a wrong type would switch callbacks off without a word.
            if not isinstance(self.callbacks, (list, tuple, type(None))):
                self._validate_params()
        else:
            self._validate_params()
        with contextlib.ExitStack() as stack:
            stack.enter_context(sklearn_config_context(skip_parameter_validation=True))
            torch = loaded_torch()
            if torch is not None and torch.is_inference_mode_enabled():
                # The model's own tensors are ordinary ones: inference tensors could not be
                # changed outside inference mode (partial_fit, coefs_[0][:] = 0). The user's
                # inference tensors are only read.
                stack.enter_context(torch.inference_mode(False))
            yield

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. "
                "%s is not stochastic." % self.solver
            )
        return True

    def _hidden_layer_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if np.any(np.array(sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, (bool, np.bool_)) for s in sizes):
            raise TypeError(f"hidden_layer_sizes must hold integers, got {sizes}.")
        return [int(s) for s in sizes]

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._hidden_layer_sizes()
        check_callbacks(self.callbacks)
        first_pass = not hasattr(self, "_theta") or (not self.warm_start and not incremental)
        if not first_pass:
            self._check_same_network(hidden)
        y, sample_weight = targets_beside_X(X, y, sample_weight)
        if self.early_stopping and self.solver in _STOCHASTIC_SOLVERS:
            if incremental:
                raise ValueError("partial_fit does not support early_stopping=True")
            if self.validation_fraction <= 0:
                raise ValueError("early_stopping=True needs validation_fraction > 0; got 0.")
        backend = resolve_backend(X, backend=self.backend, device=self.device)
        X, y = self._validate_fit_data(X, y, reset=first_pass)
        target_dtypes = (_numpy_dtype(y), None if sample_weight is None else _numpy_dtype(sample_weight))
        sample_weight = check_sample_weight(sample_weight, X, xp=_namespace_of(X))
        # Only now, with every input checked, may the label encoding change.
        Y, y_host = self._encode_target(y, incremental)
        n_outputs = Y.shape[1]
        if not first_pass and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs, but the model was fit with {self.n_outputs_}.")
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], hidden, n_outputs, _model_dtype(X.dtype, backend), backend)
        self._move_state_to(backend)
        # (scikit-learn's predictions have X's dtype where it is wider than the model's)
        loss_dtype = self._loss_dtype(np.result_type(host_dtype(self._theta.dtype), _numpy_dtype(X)), *target_dtypes)
        self._output_namespace = input_namespace(X if is_device_array(X) else None)
        self._publish_labels()
        data = self._training_data(X, Y, sample_weight)
        rows = data.n_samples if self.solver == "lbfgs" else self._batch_size(data.n_samples, warn_if_clipped=False)
        try:
            passes = 1 if incremental else self.max_iter
            with self._compute_settings(rows, work=data.n_samples * self._arch.layout.n_params * passes):
                try:
                    if self.solver in _STOCHASTIC_SOLVERS:
                        self._fit_stochastic(data, y_host, incremental, not first_pass, loss_dtype)
                    else:
                        self._fit_lbfgs(data, loss_dtype)
                finally:
                    # Here, not in the loops: by now the model holds what it keeps (the last
                    # finite, last completed or best weights) and its attributes match them.
                    notify(self.callbacks, "on_fit_end", self)
            self._check_finite_params()
        except NonFiniteTrainingError:
            if first_pass:  # nothing worth keeping: the estimator stays unfitted
                for name in ("_theta", "_optimizer", "_history", "n_iter_", "loss_", *_STATE_ATTRIBUTES):
                    self.__dict__.pop(name, None)
            raise
        finally:
            self._predict_cache = None
        return self

    def _check_same_network(self, hidden):
        """A warm fit or ``partial_fit`` continues the fitted network: refuse settings of another.

        scikit-learn fails deep inside on some of these changes and silently
        trains the old network on the others.
        """
        fitted = self._arch.layout.units[1:-1]
        if tuple(hidden) != fitted:
            raise ValueError(
                f"hidden_layer_sizes={tuple(hidden)}, but the fitted network has hidden layers {fitted}; "
                "warm_start and partial_fit continue the fitted network. Fit with warm_start=False "
                "to train a new one."
            )
        if not self._is_classifier and self.loss != self._arch.loss:
            raise ValueError(
                f"loss={self.loss!r}, but the network was fitted with loss={self._arch.loss!r}; "
                "warm_start and partial_fit continue the fitted network. Fit with warm_start=False "
                "to train with the new loss."
            )

    def _training_data(self, X, Y, sample_weight) -> TrainingData:
        """Everything on the device, or on the host when X is over the memory budget."""
        backend, dtype = self._backend, self._theta.dtype
        if self._streams(X):
            host = lambda a: None if a is None else _on_host(a, dtype)  # noqa: E731
            return TrainingData(host(X), host(Y), host(sample_weight),
                                batch_to_device=lambda a: to_device(a, backend))
        return TrainingData(self._to_compute(X, dtype), to_device(Y, backend, dtype),
                            to_device(sample_weight, backend, dtype))

    def _streams(self, X, backend: Backend | None = None) -> bool:
        """Is X too big for the device-memory budget (``set_config(fit_memory_budget=)``) of
        ``backend`` (the fit's by default; a predict's own, which a loaded model's fit
        backend, NumPy after unpickling, need not be)?"""
        backend = backend or self._backend
        if is_numpy_namespace(backend.xp) or sp.issparse(X) or is_sparse_tensor(X):
            return False
        budget = setting("fit_memory_budget")
        if budget is None:
            return False
        return X.shape[0] * X.shape[1] * host_dtype(self._theta.dtype).itemsize > budget

    def _rows_within_budget(self, X, rows: int) -> int:
        """``rows``, or fewer where a chunk of that many rows of X would exceed the budget."""
        budget = setting("fit_memory_budget")
        if budget is None:
            return rows
        row_bytes = max(1, X.shape[1] * host_dtype(self._theta.dtype).itemsize)
        return max(1, min(rows, int(budget) // row_bytes))

    def _to_compute(self, X, dtype):
        if is_sparse_tensor(X) and self._backend.name != "torch":
            X = sparse_tensor_to_scipy(X)  # the NumPy backend computes with SciPy's sparse matrices
        if sp.issparse(X):
            if not is_numpy_namespace(self._backend.xp):
                raise TypeError(
                    "Sparse X is supported on the NumPy backend only; pass a dense array "
                    f"to compute on {self._backend.name}."
                )
            return X.tocsr().astype(host_dtype(dtype), copy=False)
        return to_device(X, self._backend, dtype)

    def _validate_fit_data(self, X, y, reset):
        """Validated X (host or device) and y, without touching the label encoding."""
        if is_device_array(X):
            xp = _namespace_of(X)
            X = check_device_X(X, xp=xp, estimator=self, reset=reset)
            y = self._validate_target_beside_device_X(y, X.shape[0], xp=xp)
        else:
            X, y = validate_host_fit_data(
                self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                y_numeric=not self._is_classifier, dtype=(np.float64, np.float32), reset=reset,
            )
        if not self._is_classifier and isinstance(y, np.ndarray) and y.dtype.kind in "US":
            # Strings would be parsed as numbers on the way to the device (scikit-learn fails
            # inside the loss); check_array's message says to convert them explicitly.
            check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = _column_to_1d(y)
        return X, y

    def _validate_target_beside_device_X(self, y, n_samples, *, xp):
        """y for device X: checked where it lives (device) or as scikit-learn does (host)."""
        if is_device_array(y):  # (dense: targets_beside_X refused sparse tensors)
            return self._validate_device_target(y, n_samples, xp=xp)
        y = check_array(y, ensure_2d=False, dtype="numeric" if not self._is_classifier else None,
                        accept_sparse=["csr", "csc"] if self._is_classifier else False,  # multilabel
                        ensure_all_finite=True, input_name="y")
        check_consistent_length(np.empty(n_samples), y)
        return y

    def _initialize(self, n_features, hidden, n_outputs, dtype, backend: Backend):
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._output_activation()
        self._arch = Architecture(Layout((n_features, *hidden, n_outputs)), self.activation, self._loss_name())
        theta = glorot_uniform(self._arch.layout, self.activation, self._random_state, host_dtype(dtype))
        self._backend = backend
        self._theta = to_device(theta, backend)
        self._history = History(early_stopping=self.early_stopping) if self.solver in _STOCHASTIC_SOLVERS else None
        if self._history is not None and self.early_stopping:
            # A first fit that never improves restores its initial weights, as scikit-learn does.
            self._history.best_theta = backend.xp.asarray(self._theta, copy=True)
        self.__dict__.pop("_optimizer", None)
        self.__dict__.pop("loss_", None)  # a new network has no loss yet (an earlier fit's would mislead)
        self.n_iter_, self.t_ = 0, 0

    def _move_state_to(self, backend: Backend):
        """Warm starts and unpickled models continue on this fit's backend."""
        self._backend = backend
        # Training writes the parameters and the optimizer's state in place: state loaded
        # read-only (joblib's mmap_mode="r") is copied once first. torch would otherwise share
        # the read-only pages, and its first in-place write crashed the process.
        move = lambda a: to_device(_writable(a), backend)  # noqa: E731
        self._theta = move(self._theta)
        if getattr(self, "_history", None) is not None and self._history.best_theta is not None:
            self._history.best_theta = move(self._history.best_theta)
        optimizer = getattr(self, "_optimizer", None)
        if optimizer is not None:
            optimizer.map_arrays(move)
            if isinstance(optimizer, AdamOptimizer):
                optimizer.set_namespace(backend.xp)

    def _publish_labels(self):
        """Label attributes that depend on the output namespace (the classifier's ``classes_``)."""

    def _current_arch(self) -> Architecture:
        """The network as scikit-learn reads it on every call, not as it was first fit.

        ``activation`` may have changed since (``set_params`` before a
        ``partial_fit``, a warm fit or a predict), and predictions use
        ``out_activation_``: setting it to "identity" is a known way to read a
        classifier's logits. Training keeps the loss's own output activation
        (scikit-learn would train a softmax loss through the new output).
        """
        arch = self._arch
        if arch.activation == self.activation and arch.out_activation == self.out_activation_:
            return arch
        return dataclasses.replace(arch, activation=self.activation, output=self.out_activation_)

    def _objective(self, finish=True):
        """``(theta, X, Y, sw) -> (loss, grad)``; ``finish=False`` (the stochastic loop): the
        optimizers finish the gradient, and the steps share a workspace (views, one gradient buffer)."""
        xp, arch, alpha = self._backend.xp, self._current_arch(), float(self.alpha)
        if finish:
            return lambda theta, X, Y, sw: loss_and_grad(theta, X, Y, sw, arch, alpha, xp=xp)
        workspace = StepWorkspace(arch.layout)
        return lambda theta, X, Y, sw: loss_and_grad(theta, X, Y, sw, arch, alpha, xp=xp, finish=False,
                                                     workspace=workspace)

    def _loss_dtype(self, model_dtype, y_dtype, weights_dtype) -> np.dtype:
        """The dtype of ``loss_``, ``loss_curve_`` and ``best_loss_``, as scikit-learn's.

        float64 for the classifier: scikit-learn's log loss of its boolean
        one-hot targets comes out in float64 whatever X's dtype.
        """
        return np.dtype(np.float64)

    def _fit_lbfgs(self, data: TrainingData, loss_dtype: np.dtype):
        xp, theta_before = self._backend.xp, self._theta
        if data.batch_to_device is None:
            objective = self._objective()
            full_batch = lambda theta: objective(theta, data.X, data.Y, data.sample_weight)  # noqa: E731
        else:
            rows = self._rows_within_budget(data.X, self._chunk_rows(self._theta.dtype))
            full_batch = lambda theta: streamed_loss_and_grad(  # noqa: E731
                theta, data, self._current_arch(), float(self.alpha), rows, xp=xp)
        before = {name: self.__dict__[name] for name in ("n_iter_", "loss_") if name in self.__dict__}
        try:
            self._theta, self.n_iter_, loss = fit_lbfgs(
                self._theta, full_batch,
                xp=xp, to_device=lambda a: to_device(a, self._backend),
                max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol, verbose=self.verbose,
                callbacks=self.callbacks, estimator=self,
                publish=lambda theta, n_iter, loss: self._publish_iterate(theta, n_iter, loss_dtype.type(loss)),
            )
        except Exception:
            # A callback's error (Ctrl-C is handled inside): the model is the one before the
            # fit, not the iterate published for the callbacks.
            self._adopt_parameters(theta_before)
            for name in ("n_iter_", "loss_"):
                self.__dict__.pop(name, None)
            self.__dict__.update(before)
            raise
        self.loss_ = loss_dtype.type(loss)
        if not np.isfinite(self.loss_):
            # Finite weights whose predictions overflow (say, the exp output of the
            # Poisson loss on unscaled data) are no model either.
            self._theta = theta_before
            raise NonFiniteTrainingError()
        # The stochastic bookkeeping and optimizer state describe a fit that no longer made
        # the weights: they go, and a later sgd/adam fit or partial_fit starts its own.
        self.t_, self._history = 0, None
        self.__dict__.pop("_optimizer", None)
        for name in _STOCHASTIC_RECORDS:
            self.__dict__.pop(name, None)

    def _make_optimizer(self):
        xp, theta = self._backend.xp, self._theta
        if self.solver == "sgd":
            optimizer = SGDOptimizer(theta, xp=xp, learning_rate_init=self.learning_rate_init,
                                     lr_schedule=self.learning_rate, momentum=self.momentum,
                                     nesterov=self.nesterovs_momentum, power_t=self.power_t)
        else:
            optimizer = AdamOptimizer(theta, xp=xp, learning_rate_init=self.learning_rate_init,
                                      beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        optimizer.param_shapes = tuple(shape for kind in ("coefs", "intercepts")
                                       for _, _, shape in _layer_spans(self._arch.layout, kind))
        return optimizer

    def _fit_stochastic(self, data: TrainingData, y_host, incremental, trained, loss_dtype: np.dtype):
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
        history = self._continued_history(trained)
        history.loss_dtype = loss_dtype  # this call's: the curve of a partial_fit sequence may mix them
        if not trained:
            self._publish_history()  # a new fit's fresh records, even if the split below fails
        train, validation_score = data, None
        if self.early_stopping:
            train, validation_score = self._split_for_early_stopping(data, y_host)
        self._history = history  # (not before: a warm fit failing at the split changes no record)
        settings = LoopSettings(
            max_iter=self.max_iter, batch_size=self._batch_size(train.n_samples), shuffle=self.shuffle,
            tol=self.tol, n_iter_no_change=self.n_iter_no_change, verbose=self.verbose,
            incremental=incremental,
        )
        try:
            self._theta = fit_stochastic(
                self._theta, train, self._objective(finish=False), self._optimizer, self._history, settings,
                xp=self._backend.xp, random_state=self._random_state,
                to_device=lambda a: to_device(a, self._backend), validation_score=validation_score,
                callbacks=self.callbacks, estimator=self, trained=trained, publish=self._publish_history,
                keep_parameters=self._adopt_parameters,
            )
        finally:
            self._publish_history()

    def _continued_history(self, trained) -> History:
        """The bookkeeping an sgd/adam fit goes on from: the state attributes as they are now
        (a user may have edited them, as scikit-learn allows); a new History after L-BFGS, or
        with early stopping switched on or off (the curve and the sample count go on)."""
        previous = self._history
        if trained and previous is not None:
            for attribute, field in _STATE_ATTRIBUTES.items():
                if attribute in self.__dict__:
                    value = self.__dict__[attribute]
                    if field in ("loss_curve", "validation_scores") and not isinstance(value, (list, type(None))):
                        value = list(value)  # a tuple or an array: the loop appends and rolls back
                    setattr(previous, field, value)
        if previous is not None and previous.early_stopping == self.early_stopping:
            return previous
        history = History(early_stopping=self.early_stopping)
        if previous is not None:
            history.t, history.loss_curve = previous.t, previous.loss_curve
        return history

    def _adopt_parameters(self, theta):
        """``theta`` as the model's parameters from now on (what a fit cut short keeps, say):
        a converted copy cached for predictions on another backend no longer holds."""
        self._theta, self._predict_cache = theta, None

    def _publish_iterate(self, theta, n_iter: int, loss):
        """An L-BFGS iterate as the model, for the callbacks of that iteration."""
        self._adopt_parameters(theta)
        self.n_iter_, self.loss_ = n_iter, loss

    def _publish_history(self):
        h = self._history
        self.n_iter_ = h.n_iter
        if h.loss is not None:  # (scikit-learn's loss_ stays until an epoch ends)
            self.loss_ = h.loss
        for attribute, field in _STATE_ATTRIBUTES.items():
            setattr(self, attribute, getattr(h, field))

    @contextlib.contextmanager
    def _compute_settings(self, rows: int, work: float):
        """BLAS threads for this problem size, the kernels setting read once, not per batch, and
        the CPU's subnormal modes if ``flush_denormals`` asks for them.

        ``work`` (samples x parameters x epochs) decides whether a NumPy fit may
        be the one that loads numba: its import and cache load (~0.5 s, once per
        process) is repaid only by longer fits, and fused or not, the weights
        come out bitwise the same. torch's fused ops cost nothing to load.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._blas_threads(rows))
            stack.enter_context(config_context(kernels=self._kernels_for(work, self._backend.xp)))
            if setting("flush_denormals") and is_numpy_namespace(self._backend.xp):
                # NumPy only: OpenBLAS's threads exist already, but torch starts its pool
                # lazily, and threads started here would copy the modes and keep them.
                stack.enter_context(denormals_flushed())
            yield

    def _kernels_for(self, work: float, xp) -> str:
        """The kernels setting for ``work`` units computed on ``xp``."""
        kernels = setting("kernels")
        numba_would_load = is_numpy_namespace(xp) and not fused_kernels_loaded()
        if kernels == "auto" and numba_would_load and work < FUSED_KERNELS_MIN_WORK:
            return "array_api"
        return kernels

    def _blas_threads(self, rows: int):
        """One BLAS thread on the NumPy backend unless the matrix products dominate.

        OpenBLAS's helper threads spin between calls, and on a 2-vCPU machine
        the spinning thread slows the main thread's elementwise work. So a
        second thread pays only where products are big and elementwise work
        between them is small (measured, per fit, 1 thread vs 2): MNIST (784,
        100) at batch 200, 15.7M multiply-adds per product and ~720 per
        activation value, 0.57 s vs 0.48 s per epoch; digits L-BFGS (64,),
        7.4M per product but 64 per activation value, 0.23 s vs 0.77 s.
        """
        if not is_numpy_namespace(self._backend.xp):
            return contextlib.nullcontext()
        fans = list(zip(self._arch.layout.units[:-1], self._arch.layout.units[1:]))
        largest = rows * max(a * b for a, b in fans)
        intensity = sum(a * b for a, b in fans) / sum(b for _, b in fans)
        if largest >= SMALL_GEMM_MACS and intensity >= MIN_GEMM_INTENSITY:
            return contextlib.nullcontext()
        return one_blas_thread()

    def _batch_size(self, n_samples: int, warn_if_clipped: bool = True) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples and warn_if_clipped:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _split_for_early_stopping(self, data: TrainingData, y_host):
        """Training rows on the device, and a host-side scorer for the held-out rows."""
        stratify = self._stratify_labels(y_host)
        train_idx, val_idx = split_validation(
            data.n_samples, self.validation_fraction, self._random_state, stratify=stratify
        )
        take = lambda a, idx: None if a is None else _take_rows(a, idx, self._backend)  # noqa: E731
        train = TrainingData(take(data.X, train_idx), take(data.Y, train_idx), take(data.sample_weight, train_idx),
                             batch_to_device=data.batch_to_device)
        X_val = take(data.X, val_idx)
        y_val = self._validation_target(y_host, data, val_idx)
        sw_val = None if data.sample_weight is None else to_host(take(data.sample_weight, val_idx))

        def validation_score(theta):
            return self._score_predictions(y_val, self._predict_host(theta, X_val), sw_val)

        return train, validation_score

    def _check_finite_params(self):
        xp = self._backend.xp
        if not bool(to_host(xp.all(xp.isfinite(self._theta)))):
            raise NonFiniteTrainingError()

    # ------------------------------------------------------------------ prediction

    def _validate_predict_X(self, X):
        """(X on the compute backend, backend, namespace/device to answer in)."""
        check_is_fitted(self)
        on_device = is_device_array(X)
        out = input_namespace(X if on_device else None)
        if on_device:
            X = check_device_X(X, xp=_namespace_of(X), estimator=self, reset=False)
        else:
            X = validate_predict_host_X(self, X)
        backend = self._predict_backend(X)
        theta = self._theta_on(backend)
        dtype = self._predict_dtype(X, backend) or theta.dtype
        if is_sparse_tensor(X) and backend.name != "torch":
            X = sparse_tensor_to_scipy(X)
        sparse = sp.issparse(X)
        if sparse and not is_numpy_namespace(backend.xp):
            X, sparse = X.toarray(), False
        if sparse:
            X = X.tocsr().astype(host_dtype(dtype))
        elif self._streams(X, backend):
            X = _on_host(X, theta.dtype)  # moved chunk by chunk
        else:
            X = to_device(X, backend, dtype)
        return X, backend, theta, out

    def _predict_backend(self, X) -> Backend:
        """Where to predict; the input's own namespace when the chosen one is missing here.

        A model fit with ``backend="cupy"`` or ``device="cuda"`` and loaded on a
        machine without a GPU still predicts (on NumPy for NumPy input), with a
        warning, rather than failing: fitting is where a missing GPU is an error.
        """
        try:
            return resolve_backend(X, backend=self.backend, device=self.device)
        except BackendUnavailableError as exc:
            warnings.warn(f"{exc} Predicting on the input's own namespace instead.", UserWarning)
            return resolve_backend(X, backend=_input_backend_name(X), device=None)

    def _predict_dtype(self, X, backend: Backend):
        """None (X takes the model's dtype), or float64 where NumPy would promote to it.

        scikit-learn computes ``X @ coefs_`` with NumPy's promotion, so a model
        fit on float32 answers float64 (or int64) X in float64, its float32
        weights applied as they are; so does the NumPy backend, for host X.
        Other libraries compute in the model's dtype (torch does not promote
        inside a product, and some devices have no float64).
        """
        if not is_numpy_namespace(backend.xp) or is_device_array(X):
            return None
        model = host_dtype(self._theta.dtype)  # the model may live in another library
        if model == np.float64 or np.result_type(X.dtype, model).itemsize < 8:
            return None
        return np.dtype(np.float64)

    def _theta_on(self, backend: Backend):
        """The parameters on ``backend``, converted once and cached.

        torch counts in-place changes (``_version``), so edits through torch
        ``coefs_`` views are seen; CuPy and others offer no such counter.

        theta is read once, and brought to ``backend`` even where the model's backend is that
        one already (a no-op): a warm fit on another library, in another thread, moves the
        backend and then theta, and a predict between the two read theta in the old library.
        """
        theta = self._theta
        if backend.name == self._backend.name and repr(backend.device) == repr(self._backend.device):
            return to_device(theta, backend)
        version = _version_of(theta)
        if version is None:
            # No change counter (NumPy, CuPy, array_api_strict): a cached copy would miss
            # edits made in place through coefs_, so each predict converts afresh.
            return to_device(theta, backend)
        key = (backend.name, repr(backend.device), version)
        cached = getattr(self, "_predict_cache", None)  # read once: another thread may replace it
        if cached is None or cached[0] != key:
            cached = self._predict_cache = (key, to_device(theta, backend))
        return cached[1]

    def _chunk_rows(self, dtype) -> int:
        """Rows whose activations fit in PREDICT_CHUNK_BYTES.

        Per row: the widest layer twice (its pre-activation and activation are
        alive together), plus every layer's output, which covers the input
        chunk a device backend copies and the outputs collected so far.
        """
        units = self._arch.layout.units
        width = 2 * max(units) + sum(units[1:])
        return max(1, PREDICT_CHUNK_BYTES // (width * host_dtype(dtype).itemsize))

    def _forward(self, X, theta, xp):
        """Output-layer activations ``(n, n_outputs)``, computed in bounded chunks.

        A host X on a device backend (streamed data) moves one chunk at a time.
        """
        n, rows = X.shape[0], self._chunk_rows(X.dtype)  # X's dtype is the activations' (float64 X, float32 model)
        streamed = isinstance(X, np.ndarray) and not is_numpy_namespace(xp)
        if streamed:  # each chunk is a copy of X's rows on the device, within the budget too
            rows = self._rows_within_budget(X, rows)
        backend = Backend(xp, device_of(theta)) if streamed else None
        parts, arch = [], self._current_arch()
        # The library's default BLAS threads: measured, a predict is never slower with them
        # (small ones ~8% faster without the limiter's two thread-count changes).
        with config_context(kernels=self._kernels_for(0, xp)):
            for start in range(0, n, rows):
                chunk = take_rows(X, slice(start, min(start + rows, n)), xp=xp) if n > rows else X
                parts.append(forward(theta, to_device(chunk, backend) if streamed else chunk, arch, xp=xp, keep=False))
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)

    def _predict_host(self, theta, X):
        """Predictions for the early-stopping scorer, as host labels/values."""
        xp = self._backend.xp
        return to_host(self._outputs_to_predictions(self._forward(X, theta, xp), xp))

    # ------------------------------------------------------------------ persistence

    def __getstate__(self):
        state = self.__dict__.copy()
        if "_theta" in state:
            state["_theta"] = to_host(state["_theta"])
        if state.get("_history") is not None:
            history = state["_history"] = copy.copy(state["_history"])
            history.best_theta = to_host(history.best_theta)
        if state.get("_optimizer") is not None:
            optimizer = state["_optimizer"] = copy.copy(state["_optimizer"])
            optimizer.map_arrays(to_host)
            if isinstance(optimizer, AdamOptimizer):
                optimizer.set_namespace(None)
        state.pop("_predict_cache", None)
        if "_backend" in state:
            state["_backend"] = backend_name(state["_backend"].xp)
        if "_output_namespace" in state:
            state["_output_namespace"] = "numpy"
            if is_device_array(state.get("classes_")):  # in X's namespace under array_api_dispatch
                # NumPy in the file, so that it loads anywhere; back in that namespace on loading
                # where it exists (joblib's workers hand fitted models back as pickles).
                state["_classes_namespace"] = (backend_name(_namespace_of(state["classes_"])),
                                               device_spelling(device_of(state["classes_"])))
                state["classes_"] = state["_label_binarizer"].classes_
        state["_anymlp_version"] = __version__
        state["_anymlp_pickle_format"] = _PICKLE_FORMAT
        return state

    def __setstate__(self, state):
        fmt = state.pop("_anymlp_pickle_format", None)
        version = state.get("_anymlp_version", "unknown")
        if fmt is not None and not (isinstance(fmt, int) and fmt <= _PICKLE_FORMAT):  # newer, or not ours
            raise IncompatibleModelError(
                f"This model was saved by anymlp {version} (pickle format {fmt}); anymlp "
                f"{__version__} reads format {_PICKLE_FORMAT} and older. Upgrade anymlp to load it."
            )
        if "_backend" in state:
            # Saved arrays are NumPy: the model loads anywhere and moves on first use.
            state["_backend"] = Backend(namespace_by_name("numpy"), None)
            state["_output_namespace"] = input_namespace()
        if state.get("_optimizer") is not None and isinstance(state["_optimizer"], AdamOptimizer):
            state["_optimizer"].set_namespace(namespace_by_name("numpy"))
        where = state.pop("_classes_namespace", None)
        if where is not None:  # (not only under dispatch: joblib unpickles a worker's results in a thread of its own)
            state["classes_"] = _classes_back_in(state["classes_"], *where)
        self.__dict__.update(state)

    def __sklearn_is_fitted__(self):
        # n_features_in_ alone is not enough: a first fit may fail after validating X.
        return hasattr(self, "_theta") and hasattr(self, "n_outputs_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True  # computed in the input's namespace, on its device
        return tags


def _layer_spans(layout, kind: str) -> list:
    """``(start, stop, shape)`` in theta of each layer's ``coefs_`` or ``intercepts_``."""
    if kind == "coefs":
        return layout.coef_slices
    return [(a, b, (b - a,)) for a, b in layout.intercept_slices]


class _ParameterList(list):
    """``coefs_``/``intercepts_``: a list whose item assignment writes into the model.

    scikit-learn keeps the lists themselves, so ``est.coefs_[0] = W`` changes
    its model; anymlp keeps one flat parameter vector and builds the lists on
    access, so without this the assignment would land in a temporary list and
    be lost without a word. Only the assigned layers are written (other
    entries may be stale copies). Changes of length cannot keep the fitted
    architecture and are refused; copies (``list(...)``, pickling) are plain lists.
    """

    def __init__(self, arrays, write):
        super().__init__(arrays)
        self._write = write

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            value = list(value)  # once: it may be a generator
            positions = range(len(self))[index]
            if len(value) != len(positions):
                self._refuse()
            self._write(positions, value)  # checks the shapes before anything changes
        else:
            self._write([range(len(self))[index]], [value])  # IndexError as a list's, negatives too
        super().__setitem__(index, value)

    def __reduce__(self):
        return list, (list(self),)

    def _refuse(self, *args, **kwargs):
        raise TypeError(
            "coefs_ and intercepts_ hold one array per layer; assign an item (coefs_[i] = W) or "
            "a whole list of the fitted shapes."
        )

    append = extend = insert = pop = remove = clear = sort = reverse = __delitem__ = __iadd__ = __imul__ = _refuse


def _version_of(theta):
    """torch's in-place change counter, or None (other libraries; inference-mode tensors,
    which refuse to report it: their edits through views go unseen by the predict cache)."""
    try:
        return theta._version
    except (AttributeError, RuntimeError):
        return None


def _namespace_of(X):
    return input_namespace(X if is_device_array(X) else None)[0]


def _numpy_dtype(a) -> np.dtype:
    """NumPy's dtype for what scikit-learn makes of ``a`` (an array of any library, a number
    or a list): the dtype its arithmetic promotes with. float64 where no other is known."""
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        return np.asarray(a).dtype if np.isscalar(a) else np.dtype(np.float64)
    try:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])  # torch.float32, array_api_strict.float32
    except TypeError:
        return np.dtype(np.float64)


def _model_dtype(X_dtype, backend: Backend):
    """X's float dtype, or float32 on a device without float64 (like scikit-learn's array API)."""
    if "float64" in str(X_dtype) and not supports_float64(backend):
        return np.dtype(np.float32)
    return host_dtype(X_dtype)


def _take_rows(a, idx, backend: Backend):
    """Rows ``idx`` (a host index array) of an array on the host or on ``backend``."""
    on_host = sp.issparse(a) or isinstance(a, np.ndarray)
    return take_rows(a, idx if on_host else to_device(idx, backend), xp=backend.xp)


def _input_backend_name(X) -> str:
    return backend_name(_namespace_of(X))


def _classes_back_in(classes, library: str, device: str):
    """A loaded model's ``classes_`` in the namespace and on the device it was fit with (under
    array_api_dispatch), or NumPy where that library or device is not there."""
    try:
        return to_device(classes, resolve_backend(backend=library, device=device))
    except Exception:  # noqa: BLE001 - no such library or device here: NumPy, as scikit-learn keeps them
        return classes


def _column_to_1d(y):
    """A one-column y as 1-D, with scikit-learn's DataConversionWarning; its TypeError for
    sparse y (``column_or_1d``), which only multi-column targets may be."""
    if not is_device_array(y):
        return column_or_1d(y, warn=True)
    warnings.warn(
        "A column-vector y was passed when a 1d array was expected. Please change the shape "
        "of y to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=2)
    return y[:, 0]


def _writable(a):
    """``a``, or a copy of it that training can write in place: of a NumPy array that cannot be
    written (loaded with joblib's ``mmap_mode="r"``), or of a torch inference tensor outside
    ``torch.inference_mode`` (a model fit inside it), which torch refuses to change there."""
    if isinstance(a, np.ndarray):
        return a if a.flags.writeable else a.copy()
    if is_tensor(a) and a.is_inference() and not sys.modules["torch"].is_inference_mode_enabled():
        return a.clone()  # a clone made outside inference mode is an ordinary tensor
    return a


def _on_host(a, dtype) -> np.ndarray:
    """``a`` as a host array in the model's float dtype: streamed data stays here."""
    return np.asarray(host_copy(a), dtype=host_dtype(dtype))


def host_copy(a):
    """Device arrays to NumPy; anything else (lists, NumPy, None) unchanged."""
    return to_host(a) if is_device_array(a) else a
