"""Pictures of a fitted MLP: learning curves, first-layer weights, confusion matrix, a report.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: nothing here picks a GUI backend or keeps figures alive in pyplot's
registry, and saving renders with Agg, so it works without a screen. Pass ``ax=``
(or ``fig=``) to draw into your own figure instead.

The estimator's arrays may live on a device (``coefs_`` of a model fit on torch or
CuPy input); they are copied to the host once per plot.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

__all__ = [
    "plot_learning_curves",
    "plot_first_layer_weights",
    "plot_confusion_matrix",
    "write_report",
]


def _to_numpy(array) -> np.ndarray:
    """Host copy of a NumPy, CuPy, torch or other array-API array."""
    try:
        from anymlp._backend import to_host
    except ImportError:  # pragma: no cover - layer 0 ships with anymlp
        to_host = None
    if to_host is not None:
        return np.asarray(to_host(array))
    if hasattr(array, "get"):  # CuPy
        return array.get()
    if hasattr(array, "detach"):  # torch
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _fitted(estimator, *, classifier=False):
    """scikit-learn's NotFittedError for an unfitted model, and a plain message where a
    classifier is needed (a regressor has no classes to draw)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    if classifier and not hasattr(estimator, "classes_"):
        raise TypeError(f"{type(estimator).__name__} is not a classifier: a confusion matrix needs classes.")
    binarizer = getattr(estimator, "_label_binarizer", None)
    if classifier and getattr(binarizer, "y_type_", None) == "multilabel-indicator":
        raise TypeError("a confusion matrix needs one label per sample; this model was fit on a multilabel "
                        "indicator (use sklearn.metrics.multilabel_confusion_matrix).")


def _new_axes(ax, figsize):
    from matplotlib.figure import Figure

    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def plot_learning_curves(estimator, ax=None):
    """Training loss per epoch, and the validation score (right axis) with early stopping.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes; ``ax.right_axis`` is the twin Axes of the validation
        scores, or None without them.
    """
    from matplotlib.ticker import MaxNLocator

    _fitted(estimator)

    ax = _new_axes(ax, (6, 4))
    losses = list(getattr(estimator, "loss_curve_", None) or [])
    if not losses and getattr(estimator, "loss_", None) is not None:
        losses = [float(estimator.loss_)]  # L-BFGS keeps only the final loss
    epochs = np.arange(1, len(losses) + 1)
    ax.plot(epochs, losses, color="C0", marker="o" if len(losses) < 30 else None,
            label="training loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training loss")
    ax.set_title("Learning curves")
    ax.grid(True, alpha=0.3)
    ax.right_axis = None
    scores = list(getattr(estimator, "validation_scores_", None) or [])
    handles = ax.get_lines()
    if scores:
        right = ax.twinx()
        handles += right.plot(np.arange(1, len(scores) + 1), scores, color="C1",
                              marker="s" if len(scores) < 30 else None, label="validation score")
        right.set_ylabel("validation score")
        ax.right_axis = right
    ax.legend(handles=handles, loc="center right")
    return ax


def plot_first_layer_weights(estimator, image_shape=None, *, max_images=64, fig=None, cmap="gray"):
    """The input weights of the first hidden units, each drawn as an image.

    As in scikit-learn's "Visualization of MLP weights on MNIST" example: one panel per
    hidden unit, all on one color scale (half the weights' range, for contrast).

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    image_shape : (int, int), optional
        Shape of one input image. Default: a square, side ``sqrt(n_features)``.
    max_images : int, default=64
        Draw at most this many hidden units (the first ones).
    fig : matplotlib Figure, optional
        Draw into this (empty) figure.

    Returns
    -------
    fig : matplotlib Figure with one Axes per drawn unit.
    """
    from matplotlib.figure import Figure

    _fitted(estimator)
    if not (isinstance(max_images, numbers.Integral) and not isinstance(max_images, bool) and max_images >= 1):
        raise ValueError(f"max_images must be a positive integer; got {max_images!r}.")
    weights = _to_numpy(estimator.coefs_[0])  # (n_features, n_hidden), host
    n_features, n_hidden = weights.shape
    image_shape = _image_shape(n_features, image_shape)
    n_images = min(n_hidden, max_images)
    cols = math.ceil(math.sqrt(n_images))
    rows = math.ceil(n_images / cols)
    if fig is None:
        fig = Figure(figsize=(1.1 * cols, 1.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    vmin, vmax = 0.5 * weights.min(), 0.5 * weights.max()
    for index, ax in enumerate(axes.ravel()):
        if index >= n_images:  # the grid's last row may be short: fig.axes is the drawn units
            fig.delaxes(ax)
            continue
        ax.set_axis_off()
        ax.imshow(weights[:, index].reshape(image_shape), cmap=cmap, vmin=vmin, vmax=vmax)
    fig.suptitle(f"First-layer weights ({n_images} of {n_hidden} hidden units)")
    return fig


def _image_shape(n_features, image_shape):
    if image_shape is not None:
        if math.prod(image_shape) != n_features:
            raise ValueError(f"image_shape={tuple(image_shape)} does not hold {n_features} features.")
        return tuple(image_shape)
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(
            f"{n_features} input features are not a square image; pass image_shape=(rows, cols)."
        )
    return side, side


def plot_confusion_matrix(estimator, X, y, *, ax=None, normalize=None, cmap="Blues"):
    """Confusion matrix of ``estimator.predict(X)`` against ``y``.

    Parameters
    ----------
    estimator : fitted classifier
    X : array of shape (n_samples, n_features), any namespace the estimator accepts
    y : array of shape (n_samples,), true labels
    ax : matplotlib Axes, optional
    normalize : {None, "true", "pred", "all"}, default=None
        As in :func:`sklearn.metrics.confusion_matrix`.

    Returns
    -------
    ax : matplotlib Axes; ``ax.confusion_matrix`` holds the (n_classes, n_classes) array.
    """
    from sklearn.metrics import confusion_matrix

    _fitted(estimator, classifier=True)
    labels = _to_numpy(estimator.classes_)
    y_true, y_pred = _to_numpy(y), _to_numpy(estimator.predict(X))
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    matrix = counts if normalize is None else confusion_matrix(
        y_true, y_pred, labels=labels, normalize=normalize)
    ax = _new_axes(ax, (6, 5.5))
    image = ax.imshow(matrix, cmap=cmap)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    threshold = matrix.max() / 2
    fmt = "{:d}" if normalize is None else "{:.2f}"
    if len(labels) <= 30:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, [str(label) for label in labels])
    ax.set_yticks(ticks, [str(label) for label in labels])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.4f})")
    ax.confusion_matrix = matrix
    return ax


def write_report(estimator, X_test, y_test, directory, *, image_shape=None, summary=None,
                 title="anymlp training report", dpi=100):
    """Save the three plots as PNGs in ``directory`` and a ``report.md`` embedding them.

    Parameters
    ----------
    estimator : fitted MLPClassifier
    X_test, y_test : arrays, the held-out data for the confusion matrix
    directory : str or path-like, created if missing
    image_shape : (int, int), optional
        For the weight images; default a square. When the inputs are not images
        (not square and no ``image_shape``), the weights plot is left out.
    summary : dict, optional
        Extra ``name: value`` rows for the report's summary table.

    Returns
    -------
    dict mapping ``"report"``, ``"learning_curves"``, ``"confusion_matrix"`` and
    ``"first_layer_weights"`` (when drawn) to the written paths.
    """
    directory = Path(directory)
    _fitted(estimator, classifier=True)  # before a folder is made for nothing
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "learning_curves": plot_learning_curves(estimator).figure,
        "confusion_matrix": plot_confusion_matrix(estimator, X_test, y_test).figure,
    }
    try:
        figures["first_layer_weights"] = plot_first_layer_weights(estimator, image_shape)
    except ValueError:
        pass  # not images: nothing to draw
    paths = {}
    for name, figure in figures.items():
        paths[name] = directory / f"{name}.png"
        figure.savefig(paths[name], dpi=dpi)
    paths["report"] = directory / "report.md"
    paths["report"].write_text(_markdown(estimator, X_test, y_test, paths, summary, title))
    return paths


def _markdown(estimator, X_test, y_test, paths, summary, title):
    from sklearn.metrics import classification_report

    rows = dict(summary or {})
    rows.setdefault("estimator", type(estimator).__name__)
    rows.setdefault("epochs", getattr(estimator, "n_iter_", "?"))
    if getattr(estimator, "loss_", None) is not None:
        rows.setdefault("final training loss", f"{float(estimator.loss_):.6f}")
    if getattr(estimator, "best_validation_score_", None) is not None:
        rows.setdefault("best validation score", f"{float(estimator.best_validation_score_):.4f}")
    params = {k: v for k, v in estimator.get_params().items() if k != "callbacks"}
    y_pred = _to_numpy(estimator.predict(X_test))
    sections = {
        "learning_curves": "Learning curves",
        "first_layer_weights": "First-layer weights",
        "confusion_matrix": "Confusion matrix",
    }
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows.items()]
    for key, heading in sections.items():
        if key in paths:
            lines += ["", f"## {heading}", "", f"![{heading}]({os.path.basename(paths[key])})"]
    lines += ["", "## Per-class scores", "", "```",
              classification_report(_to_numpy(y_test), y_pred, digits=4, zero_division=0).rstrip(), "```"]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {name} | `{value!r}` |" for name, value in params.items()]
    return "\n".join(lines) + "\n"
