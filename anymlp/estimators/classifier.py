"""MLPClassifier: scikit-learn's classifier, computed on any array namespace."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn import get_config as get_sklearn_config
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_consistent_length

from anymlp._backend import device_of, is_numpy_namespace, to_host, to_namespace_of
from anymlp.estimators.base import BaseMLP, host_copy


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` on any backend.

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` 1.9.1,
    with the same defaults and order, plus:

    backend : {"numpy", "cupy", "torch", "array_api_strict"} or None, default=None
        Where to compute. None follows :func:`anymlp.set_config`, then the input.
    device : str or None, default=None
        Device for the backend, e.g. ``"cuda:1"`` or ``"cpu"``.
    callbacks : list or None, default=None
        Objects with ``on_epoch_end``-style hooks (:class:`anymlp.Callback`).
    """

    def __init__(
        self,
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

    _is_classifier = True
    loss = "log_loss"  # scikit-learn exposes it as an attribute, not a parameter

    def _loss_name(self) -> str:
        return "log_loss" if self._label_binarizer.y_type_ == "multiclass" else "binary_log_loss"

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    # ------------------------------------------------------------------ targets

    def _validate_device_target(self, y, n_samples, *, xp):
        y = check_array(to_host(y), ensure_2d=False, dtype=None, input_name="y")
        check_consistent_length(np.empty(n_samples), y)
        return y

    def _encode_target(self, y, incremental):
        """Binarize labels on the host: ``(Y float (n, n_outputs), y)``."""
        known = hasattr(self, "_label_binarizer") and (self.warm_start or incremental)
        if not known:
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        Y = self._encode_known_labels(y)  # the classes are known now either way
        if Y is not None:
            return Y, y
        if known:
            self._check_known_classes(y)
        Y = self._label_binarizer.transform(y).astype(bool)
        return Y.astype(np.float64), y

    def _encode_known_labels(self, y):
        """The binarizer's rows for y, when y is a 1-D integer or string array of known labels.

        ``LabelBinarizer.transform`` and the known-classes check work out the
        target type of every batch again: most of a 200-row ``partial_fit``,
        and a third of a small fit's fixed cost;
        with the classes fixed, a sorted lookup gives the same rows. None
        for anything else (unseen or missing labels, other dtypes,
        multilabel), which takes scikit-learn's checks and messages.
        """
        classes, kind = self._label_binarizer.classes_, self._label_binarizer.y_type_
        if not (isinstance(y, np.ndarray) and y.ndim == 1 and kind in ("binary", "multiclass")):
            return None
        if not _same_label_kind(y.dtype, classes.dtype) or len(classes) < 2:
            return None
        codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
        if not np.array_equal(classes[codes], y):
            return None  # a label the model has not seen
        if self.warm_start and np.unique(codes).size < len(classes):
            return None  # warm_start wants every class again
        if kind == "binary":
            return (codes == 1).astype(np.float64)[:, None]
        Y = np.zeros((y.shape[0], len(classes)))
        Y[np.arange(y.shape[0]), codes] = 1.0
        return Y

    def _check_known_classes(self, y):
        classes, known = unique_labels(y), self._label_binarizer.classes_
        if self.warm_start:
            if set(classes) != set(known):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {known}, `y` has {classes}"
                )
        elif len(np.setdiff1d(classes, known, assume_unique=True)):
            raise ValueError(
                "`y` has classes not in `self.classes_`. "
                f"`self.classes_` has {known}. 'y' has {classes}."
            )

    def _publish_labels(self):
        """``classes_`` in X's namespace where scikit-learn's ``array_api_dispatch`` is on (numeric
        labels), as its array-API classifiers keep them: its tools (``cross_val_predict``,
        stacking) check them beside the predictions. NumPy otherwise, as in scikit-learn."""
        classes = self._label_binarizer.classes_
        out_xp, out_device = self._output_namespace
        if get_sklearn_config()["array_api_dispatch"] and classes.dtype.kind in "biuf":
            try:
                classes = to_namespace_of(classes, out_xp, out_device)
            except (TypeError, ValueError, RuntimeError):  # a dtype that library lacks: NumPy, as scikit-learn
                pass
        self.classes_ = classes

    def _stratify_labels(self, y_host):
        # scikit-learn stratifies only single-output (binary) problems.
        if self.n_outputs_ != 1:
            return None
        return self._label_binarizer.transform(y_host).astype(bool)

    def _validation_target(self, y_host, data, val_idx):
        if sp.issparse(y_host):  # multilabel; scored against dense predictions
            return y_host[val_idx].toarray()
        return np.asarray(y_host)[val_idx]

    def _score_predictions(self, y_true, y_pred, sample_weight):
        """``accuracy_score``'s value; for label vectors computed as it computes it.

        Early stopping scores every epoch, and accuracy_score's target checks
        took ~2 ms a call: 60% of a small fit (300 rows, 200 epochs). Past
        them, for labels it is ``float(np.average(y_true == y_pred, weights=w))``;
        all-zero weights take accuracy_score for its message.
        """
        if (isinstance(y_true, np.ndarray) and isinstance(y_pred, np.ndarray) and y_true.ndim == 1
                and y_pred.shape == y_true.shape and (sample_weight is None or np.any(sample_weight))):
            return float(np.average(y_true == y_pred, weights=sample_weight))
        return accuracy_score(y_true, y_pred, sample_weight=sample_weight)

    # ------------------------------------------------------------------ prediction

    def _outputs_to_predictions(self, P, xp):
        """Class codes (n,) or the multilabel indicator (n, n_labels), on P's device."""
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return xp.astype(P > 0.5, xp.int64)
        if self.n_outputs_ == 1:
            if len(self._label_binarizer.classes_) == 1:
                return xp.zeros(P.shape[0], dtype=xp.int64, device=device_of(P))
            return xp.astype(P[:, 0] > 0.5, xp.int64)
        return xp.argmax(P, axis=1)

    def _decode_host(self, codes):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return codes
        return self._label_binarizer.classes_[codes]

    def _predict_host(self, theta, X):
        return self._decode_host(super()._predict_host(theta, X))

    def predict(self, X):
        """Predicted labels (n,), or the indicator matrix for multilabel problems.

        Numeric labels come back in X's namespace and on its device; string
        labels come back as NumPy (no array library on a GPU holds strings).
        """
        X, backend, theta, (out_xp, out_device) = self._validate_predict_X(X)
        xp = backend.xp
        codes = self._outputs_to_predictions(self._forward(X, theta, xp), xp)
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            if getattr(self._label_binarizer, "sparse_input_", False) and is_numpy_namespace(out_xp):
                return sp.csr_matrix(to_host(codes))  # sparse y, sparse predictions, as in scikit-learn
            return to_namespace_of(codes, out_xp, out_device)
        classes = self._label_binarizer.classes_
        if _takes_on_device(classes.dtype):
            classes = to_namespace_of(classes, xp, backend.device)
            return to_namespace_of(xp.take(classes, codes, axis=0), out_xp, out_device)
        labels = self._decode_host(to_host(codes))
        if labels.dtype.kind != "u":
            return labels  # strings and objects: only NumPy holds them
        return to_namespace_of(labels, out_xp, out_device)

    def _proba(self, X, transform=None):
        X, backend, theta, (out_xp, out_device) = self._validate_predict_X(X)
        xp = backend.xp
        P = self._forward(X, theta, xp)
        if self.n_outputs_ == 1:
            P = xp.stack([1 - P[:, 0], P[:, 0]], axis=1)
        if transform is not None:
            P = transform(P, xp)
        return to_namespace_of(P, out_xp, out_device)

    def predict_proba(self, X):
        """Class probabilities (n, n_classes) in X's namespace; binary stacks ``1-p, p``."""
        return self._proba(X)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``; may hold ``-inf`` as in scikit-learn."""
        with np.errstate(divide="ignore"):
            return self._proba(X, transform=lambda P, xp: xp.log(P))

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (subset accuracy for multilabel), as a Python float."""
        y_pred = host_copy(self.predict(X))
        return float(accuracy_score(host_copy(y), y_pred, sample_weight=host_copy(sample_weight)))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` is required on the first call."""
        with self._fit_context(partial_fit=True):
            # Labels are encoded on the host: device arrays come over explicitly (a device
            # that refuses implicit conversion would refuse scikit-learn's np.asarray).
            classes = host_copy(classes)
            if _first_partial_fit(self, classes):
                binarizer, y_host = LabelBinarizer(), host_copy(y)
                if type_of_target(y_host).startswith("multilabel"):
                    try:
                        _check_labels_declared(y_host, self.classes_)
                    except ValueError:
                        del self.classes_  # a first call refused leaves no trace
                        raise
                    binarizer.fit(y_host)
                else:
                    binarizer.fit(classes)
                self._label_binarizer = binarizer
            return self._fit(X, y, sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _takes_on_device(dtype) -> bool:
    """Label dtypes every backend can gather with ``take`` (torch cannot for uint16-64)."""
    return dtype.kind in "fbi" or dtype == np.uint8


def _same_label_kind(a: np.dtype, b: np.dtype) -> bool:
    """Both integers, or both strings: labels that sort and compare alike."""
    return (a.kind in "iu" and b.kind in "iu") or (a.kind == b.kind == "U")


def _check_labels_declared(y, declared):
    """scikit-learn's check of a first multilabel ``partial_fit``: the indicator's labels
    (its columns) must be among the ``classes`` given."""
    labels = unique_labels(y)
    if len(np.setdiff1d(labels, declared, assume_unique=True)):
        raise ValueError(
            "`y` has classes not in `self.classes_`. "
            f"`self.classes_` has {declared}. 'y' has {labels}."
        )


def _first_partial_fit(clf, classes) -> bool:
    """scikit-learn's ``_check_partial_fit_first_call``, without re-deriving classes it knows.

    Streaming code passes the same ``classes`` on every call; scikit-learn's
    check sorts and type-checks them each time (~0.3 ms).
    """
    binarizer = getattr(clf, "_label_binarizer", None)
    known = None if binarizer is None else binarizer.classes_
    if known is not None and isinstance(classes, np.ndarray) and classes.dtype == known.dtype \
            and np.array_equal(classes, known):
        return False
    if "classes_" not in clf.__dict__:
        return _check_partial_fit_first_call(clf, classes)
    published, clf.classes_ = clf.classes_, known  # on the host for scikit-learn's check
    try:
        return _check_partial_fit_first_call(clf, classes)  # (False or an error: classes_ known)
    finally:
        clf.classes_ = published
