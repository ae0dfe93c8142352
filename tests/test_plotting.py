"""anymlp.plotting: each plot returns matplotlib objects holding the estimator's numbers."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from anymlp import MLPClassifier  # noqa: E402
from anymlp.plotting import (  # noqa: E402
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_learning_curves,
    write_report,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return MLPClassifier((12,), max_iter=6, early_stopping=True, learning_rate_init=0.01,
                         random_state=0).fit(X, y)


def test_learning_curves_with_validation(fitted):
    ax = plot_learning_curves(fitted)
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    (loss_line,) = ax.get_lines()
    np.testing.assert_allclose(loss_line.get_ydata(), fitted.loss_curve_)
    np.testing.assert_array_equal(loss_line.get_xdata(), np.arange(1, fitted.n_iter_ + 1))
    (val_line,) = ax.right_axis.get_lines()
    np.testing.assert_allclose(val_line.get_ydata(), fitted.validation_scores_)


def test_learning_curves_without_validation_into_given_axes(digits):
    X, y = digits
    model = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    ax = Figure().add_subplot()
    assert plot_learning_curves(model, ax=ax) is ax
    assert ax.right_axis is None and len(ax.get_lines()) == 1


def test_learning_curves_lbfgs(digits):
    X, y = digits
    model = MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    (line,) = plot_learning_curves(model).get_lines()
    assert len(line.get_ydata()) >= 1
    assert line.get_ydata()[-1] == pytest.approx(model.loss_)


def test_first_layer_weights(fitted):
    fig = plot_first_layer_weights(fitted)
    assert isinstance(fig, Figure)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 12
    weights = np.asarray(fitted.coefs_[0])
    np.testing.assert_allclose(images[3].get_array(), weights[:, 3].reshape(8, 8))
    assert images[0].get_clim() == pytest.approx((0.5 * weights.min(), 0.5 * weights.max()))


def test_first_layer_weights_shape_and_limit(fitted):
    fig = plot_first_layer_weights(fitted, image_shape=(4, 16), max_images=5)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 5 and images[0].get_array().shape == (4, 16)
    assert len(fig.axes) == 5  # one Axes per drawn unit, as the docstring says: no empty cells
    with pytest.raises(ValueError, match="does not hold 64 features"):
        plot_first_layer_weights(fitted, image_shape=(5, 5))


def test_first_layer_weights_needs_a_shape_for_non_square_inputs(digits):
    X, y = digits
    model = MLPClassifier((4,), max_iter=2, random_state=0).fit(X[:, :10], y)
    with pytest.raises(ValueError, match="not a square image"):
        plot_first_layer_weights(model)
    assert len(plot_first_layer_weights(model, image_shape=(2, 5)).axes) == 4


def test_weights_on_device_arrays_are_brought_to_the_host():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(0)
    model = MLPClassifier((3,), max_iter=1, random_state=0).fit(
        torch.asarray(rng.uniform(size=(30, 16)).astype(np.float32)), torch.asarray(np.arange(30) % 2))
    with torch.no_grad():
        model.coefs_[0][...] = torch.arange(16 * 3, dtype=torch.float32).reshape(16, 3)  # a view of the model
    fig = plot_first_layer_weights(model)
    images = [im for ax in fig.axes for im in ax.get_images()]
    np.testing.assert_array_equal(images[1].get_array(), np.arange(16 * 3).reshape(16, 3)[:, 1].reshape(4, 4))


def test_plots_of_a_model_fit_on_torch(digits):
    torch = pytest.importorskip("torch")
    X, y = digits
    model = MLPClassifier((6,), max_iter=3, random_state=0).fit(torch.asarray(X), torch.asarray(y))
    fig = plot_first_layer_weights(model)
    assert sum(len(ax.get_images()) for ax in fig.axes) == 6
    ax = plot_confusion_matrix(model, torch.asarray(X), torch.asarray(y))
    assert ax.confusion_matrix.sum() == len(y)


def test_confusion_matrix(fitted, digits):
    X, y = digits
    ax = plot_confusion_matrix(fitted, X, y)
    assert isinstance(ax, Axes)
    matrix = ax.confusion_matrix
    assert matrix.shape == (10, 10) and matrix.sum() == len(y)
    assert np.trace(matrix) / len(y) == pytest.approx(fitted.score(X, y))
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), matrix)
    assert len(ax.texts) == 100
    normalized = plot_confusion_matrix(fitted, X, y, normalize="true").confusion_matrix
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0)


def test_write_report(fitted, digits, tmp_path):
    X, y = digits
    paths = write_report(fitted, X, y, tmp_path / "out", summary={"dataset": "digits"})
    assert set(paths) == {"report", "learning_curves", "first_layer_weights", "confusion_matrix"}
    markdown = paths["report"].read_text()
    for name in ["learning_curves", "first_layer_weights", "confusion_matrix"]:
        assert paths[name].read_bytes()[:8] == PNG and paths[name].stat().st_size > 5000
        assert f"]({name}.png)" in markdown
    assert "| dataset | digits |" in markdown
    assert f"| epochs | {fitted.n_iter_} |" in markdown
    assert "| hidden_layer_sizes | `(12,)` |" in markdown


def test_write_report_skips_weights_of_non_images(digits, tmp_path):
    X, y = digits
    model = MLPClassifier((4,), max_iter=2, random_state=0).fit(X[:, :10], y)
    paths = write_report(model, X[:, :10], y, tmp_path)
    assert "first_layer_weights" not in paths
    assert not (tmp_path / "first_layer_weights.png").exists()
    assert "First-layer weights" not in paths["report"].read_text()


def test_an_unfitted_model_is_refused_by_every_plot(digits, tmp_path):
    from sklearn.exceptions import NotFittedError

    X, y = digits
    for draw in (lambda m: plot_learning_curves(m), lambda m: plot_first_layer_weights(m),
                 lambda m: plot_confusion_matrix(m, X, y), lambda m: write_report(m, X, y, tmp_path / "r")):
        with pytest.raises(NotFittedError):
            draw(MLPClassifier())
    assert not (tmp_path / "r").exists()


def test_a_regressor_has_no_confusion_matrix(digits):
    from anymlp import MLPRegressor

    X, y = digits
    regressor = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y.astype(float))
    with pytest.raises(TypeError, match="MLPRegressor is not a classifier"):
        plot_confusion_matrix(regressor, X, y)


@pytest.mark.parametrize("count", [0, -1, 2.5, True])
def test_max_images_must_be_a_positive_integer(fitted, count):
    with pytest.raises(ValueError, match="max_images must be a positive integer"):
        plot_first_layer_weights(fitted, max_images=count)


def test_max_images_takes_numpy_integers(fitted):
    fig = plot_first_layer_weights(fitted, image_shape=(4, 16), max_images=np.int64(3))
    assert len([ax for ax in fig.axes if ax.images]) == 3


def test_a_multilabel_confusion_matrix_is_refused_before_a_report_folder_is_made(tmp_path):
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(60, 5, n_classes=3, random_state=0)
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, Y)
    with pytest.raises(TypeError, match="one label per sample"):
        write_report(model, X, Y, tmp_path / "report")
    assert not (tmp_path / "report").exists()
