"""The minibatch loop of the 'sgd' and 'adam' solvers, split into small steps.

fit_stochastic -> run_epoch -> (objective, optimizer.step) per batch.

The host never waits for the device inside an epoch: each batch's loss stays
on the device as :class:`~anymlp.nn.losses.LossTerms`, and
:func:`read_epoch_end` brings back one small array (every batch's loss parts
and a finiteness probe of the parameters) per epoch, and sums the batch losses
on the host.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches

from anymlp._backend import host_dtype, is_sparse_tensor, is_tensor, to_host
from anymlp.exceptions import DivergenceWarning, NonFiniteTrainingError, ZeroWeightBatchError
from anymlp.nn.losses import LossTerms
from anymlp.training.callbacks import notify
from anymlp.training.history import History


@dataclass
class TrainingData:
    """Training rows: on the compute device, or streamed from the host.

    Y is float and 2-D. When ``batch_to_device`` is set, the arrays are host
    NumPy arrays (the data is larger than the device-memory budget) and each
    batch is sent to the device by that function as it is needed.
    """

    X: Any
    Y: Any
    sample_weight: Any = None
    batch_to_device: Callable | None = None

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    def rows(self, index, *, xp):
        """``(X, Y, sample_weight)`` of the rows ``index``, on the device."""
        weights = self.sample_weight
        parts = [take_rows(self.X, index, xp=xp), take_rows(self.Y, index, xp=xp),
                 None if weights is None else take_rows(weights, index, xp=xp)]
        if self.batch_to_device is not None:
            parts = [None if a is None else self.batch_to_device(a) for a in parts]
        return parts


@dataclass
class LoopSettings:
    """The loop's share of the estimator's hyperparameters."""

    max_iter: int
    batch_size: int
    shuffle: bool
    tol: float
    n_iter_no_change: float
    verbose: Any
    incremental: bool


def take_rows(X, index, *, xp):
    """Rows ``index`` of X: a slice, or an index array on X's device."""
    if type(X) is np.ndarray and type(index) is np.ndarray:
        # Faster than X[index] (~175 vs ~200 us for 200 MNIST rows); the method, not
        # np.take, whose Python wrapper costs ~1.4 us more, twice a step.
        return X.take(index, axis=0)
    if is_tensor(X) and not isinstance(index, slice):
        # array-api-compat's take wraps negative indices first: three more launches a
        # gather on a GPU (two gathers a batch), for indices that are never negative here.
        return X.index_select(0, index)
    if sp.issparse(X) or isinstance(X, np.ndarray):
        return X[index]
    if isinstance(index, slice):
        if not is_sparse_tensor(X):
            return X[index, ...]  # the trailing ellipsis is what the standard asks for
        # torch's sparse COO has no strided views: a slice becomes its rows' indices.
        return X.index_select(0, xp.arange(*index.indices(X.shape[0]), device=X.device))
    return xp.take(X, index, axis=0)


def shuffled(order: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """``sklearn.utils.shuffle(order, random_state=random_state)``: the same draws, the same order.

    Without its input checks, which took ~0.1-0.2 ms an epoch: a third of the
    epoch of a small fit (100 samples, (10,)).
    """
    indices = np.arange(order.shape[0])
    random_state.shuffle(indices)
    return order[indices]


def snapshot(theta, *, xp):
    """A copy that later in-place updates cannot touch."""
    return xp.asarray(theta, copy=True)


def run_epoch(theta, data: TrainingData, order, batch_size, objective, optimizer, *, xp,
              callbacks=(), estimator=None):
    """One pass over the data; returns ``(theta, EpochLosses)``, the loss parts still on the device.

    ``order`` is an index array where the data lives (shuffled epoch) or None
    (rows in order).
    """
    n = data.n_samples
    batches = list(gen_batches(n, batch_size))
    losses = EpochLosses(xp)
    for b, rows in enumerate(batches):
        index = rows if order is None else order[rows]
        loss, grad = objective(theta, *data.rows(index, xp=xp))
        theta = optimizer.step(theta, grad)
        losses.add(loss, rows.stop - rows.start)
        if callbacks:
            notify(callbacks, "on_batch_end", estimator, batch=b + 1, n_batches=len(batches))
    return theta, losses


class EpochLosses:
    """Each batch's :class:`LossTerms` and row count, the parts kept on the device.

    Every ``FOLD`` batches the parts are stacked, one array per kind, so an
    epoch keeps a few arrays rather than one small one per batch and kind.
    Thousands of 0-d arrays cost memory (``batch_size=1`` over 60000 rows:
    ~50 MB of them on the host, and as many allocations on a GPU). And on
    torch's CPU allocator (plain ``malloc``) each small tensor kept between a
    batch's large temporaries pins the heap behind it: a (50,) SGD fit of
    MNIST with torch input rose by 90-100 MB during the epoch in 3 of 8 runs
    with a fold every 1024 batches, and by at most 15 MB in 8 of 8 with one
    every 8 (8-10 MB without any kept parts). Stacking 8 parts costs one
    operation per kind (two kinds without sample weights: 0.25 launches a
    batch on a GPU).
    """

    FOLD = 8

    def __init__(self, xp):
        self._xp = xp
        self.rows: list[int] = []
        self.first: LossTerms | None = None
        self._pending: list[LossTerms] = []
        self._folded: list[list] = []

    def add(self, terms: LossTerms, rows: int):
        if self.first is None:
            self.first = terms
        self.rows.append(rows)
        self._pending.append(terms)
        if len(self._pending) == self.FOLD:
            self._fold()

    @property
    def weighted(self) -> bool:
        """Sample weights: each batch's ``sw_sum`` is then a device array, not its row count."""
        return not isinstance(self.first.sw_sum, int)

    def stacked(self) -> list:
        """``[per_output, *penalties, sw_sum?]``, each (n_batches, ...) on the device."""
        if self._pending:
            self._fold()
        if len(self._folded) == 1:
            return self._folded[0]
        return [self._xp.concat(chunks, axis=0) for chunks in zip(*self._folded)]

    def _fold(self):
        terms, xp = self._pending, self._xp
        parts = [_stack([t.per_output for t in terms], xp=xp)]
        parts += [_stack([t.penalties[i] for t in terms], xp=xp) for i in range(len(terms[0].penalties))]
        parts += [_stack([t.sw_sum for t in terms], xp=xp)] if self.weighted else []
        self._folded.append(parts)
        self._pending = []


@dataclass(frozen=True)
class EpochEnd:
    """What the host learns at the end of an epoch, in one device-to-host read."""

    loss_total: float  # the batches' losses times their rows, summed
    theta_finite: bool
    zero_weight_batch: bool  # a batch's sample weights summed to 0: its loss and step are 0/0


def read_epoch_end(losses: EpochLosses, theta, *, xp) -> EpochEnd:
    largest = xp.reshape(xp.max(xp.abs(theta)), (1,))
    per_output, *penalties, (largest,) = _read_together([*losses.stacked(), largest], xp=xp)
    sw_sums = penalties.pop() if losses.weighted else None
    return EpochEnd(_summed_loss(losses, per_output, penalties, sw_sums), math.isfinite(largest),
                    sw_sums is not None and not np.all(sw_sums))


def _stack(arrays, *, xp):
    """``xp.stack(arrays)``; on the host, one array (an epoch of one batch) takes a view.

    The epoch end of a tiny fit is a good part of its time (100 rows, one batch:
    ~150 us an epoch), and NumPy's ``stack`` and array-api-compat's wrappers
    cost several microseconds a call.
    """
    if len(arrays) == 1 and isinstance(arrays[0], (np.ndarray, np.generic)):
        return np.asarray(arrays[0])[np.newaxis]
    return xp.stack(arrays)


def _read_together(arrays, *, xp) -> list[np.ndarray]:
    """Device arrays in one device-to-host read, each back in its own shape and dtype."""
    if all(type(a) is np.ndarray for a in arrays):
        return arrays  # on the host already: a third of a small fit's epoch went on the round trip
    carrier = xp.result_type(*arrays)  # wide enough for each of them exactly
    host = to_host(xp.concat([xp.reshape(xp.astype(a, carrier), (-1,)) for a in arrays]))
    ends = np.cumsum([math.prod(a.shape) for a in arrays])
    return [part.reshape(a.shape).astype(host_dtype(a.dtype))
            for part, a in zip(np.split(host, ends[:-1]), arrays)]


def _summed_loss(losses: EpochLosses, per_output, penalties, sw_sums) -> float:
    """scikit-learn's epoch sum: ``loss * rows`` over the batches, added in order.

    Each batch's loss is combined on the host by :meth:`LossTerms.value`, from
    its parts in the dtypes they had on the device, so its bits are those of
    the same operations on the device. Consecutive batches of one size go
    together (the full ones, then maybe a shorter last one), their outputs
    along the first axis as ``value`` expects, their size a Python int as on
    the device.
    """
    first, groups = losses.first, []
    for at, size in _runs_of_equal_size(losses.rows):
        sw_sum = size if sw_sums is None else sw_sums[at]
        group = LossTerms(per_output[at].T, first.scale, sw_sum, tuple(p[at] for p in penalties), first.alpha)
        groups.append(group.value(xp=np) * size)
    times_rows = np.concatenate(groups) if len(groups) > 1 else groups[0]
    return float(np.add.accumulate(times_rows)[-1])  # in order, not NumPy's pairwise sum


def _runs_of_equal_size(rows: list[int]):
    """``(slice, size)`` for each run of consecutive batches with the same number of rows."""
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end] != rows[start]:
            yield slice(start, end), rows[start]
            start = end


def fit_stochastic(theta, data: TrainingData, objective: Callable, optimizer, history: History,
                   settings: LoopSettings, *, xp, random_state, to_device: Callable,
                   validation_score: Callable | None = None, callbacks=(), estimator=None,
                   trained: bool = False, publish: Callable | None = None,
                   keep_parameters: Callable = lambda theta: None):
    """Train for up to ``max_iter`` epochs; returns the parameters to keep.

    Stops on scikit-learn's no-improvement rule, on divergence (a non-finite
    epoch: the last finite parameters are kept) and on KeyboardInterrupt (the
    parameters of the last completed epoch are kept). With early stopping the
    best parameters by validation score are returned. When no epoch ever
    finished finite (and ``trained`` says the start was not a trained model
    either), scikit-learn's ValueError about non-finite weights is raised.
    ``publish`` (called only with callbacks) sets the estimator's fitted attributes
    from ``history`` before each ``on_epoch_end``, so a callback sees (and can
    pickle) a model whose attributes match its weights. When Ctrl-C or an error
    cuts the fit short, ``keep_parameters`` gets the parameters to keep (the last
    completed epoch's, or the best with early stopping) at once, the optimizer
    state and history go back with them, and an error then propagates.
    """
    n = data.n_samples
    order_host = np.arange(n, dtype=np.int64)  # torch's sparse index_select takes int64 only
    n_batches = math.ceil(n / settings.batch_size)
    copy = lambda a: snapshot(a, xp=xp)  # noqa: E731
    # Parameters and optimizer state after the last finite epoch: what divergence and
    # Ctrl-C go back to. Without it, later partial_fits would start from NaN moments.
    last_good, last_state, ever_finite = copy(theta), optimizer.snapshot(copy), False
    unfinished = None  # the history before the epoch under way, until it is complete
    max_epochs = 1 if settings.incremental else settings.max_iter  # partial_fit: one epoch
    notify(callbacks, "on_fit_begin", estimator, max_epochs=max_epochs, n_batches=n_batches)
    try:
        history.n_iter = 0
        for _ in range(settings.max_iter):
            unfinished = history.checkpoint()
            notify(callbacks, "on_epoch_begin", estimator, epoch=history.n_iter + 1)
            started = time.perf_counter()
            order = None
            if settings.shuffle:
                order_host = shuffled(order_host, random_state)
                order = order_host if data.batch_to_device else to_device(order_host)
            # A diverging step overflows, and so does combining its loss on the host;
            # that is reported below as a DivergenceWarning.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                theta, losses = run_epoch(theta, data, order, settings.batch_size, objective,
                                          optimizer, xp=xp, callbacks=callbacks, estimator=estimator)
                end = read_epoch_end(losses, theta, xp=xp)
            if end.zero_weight_batch:  # scikit-learn raises here too: a data problem, not divergence
                raise ZeroWeightBatchError(history.n_iter + 1)
            history.record_loss(end.loss_total / n, n)
            if settings.verbose:
                print("Iteration %d, loss = %.8f" % (history.n_iter, history.loss))
            with np.errstate(over="ignore", invalid="ignore"):
                score = validation_score(theta) if history.early_stopping else None
            history.update_no_improvement(settings.tol, theta, score, lambda a: snapshot(a, xp=xp))
            if history.early_stopping and settings.verbose:
                print("Validation score: %f" % score)
            seconds = time.perf_counter() - started
            diverged = not (math.isfinite(history.loss) and end.theta_finite)
            stop = False
            if not diverged:
                # scikit-learn's epoch-end bookkeeping (the invscaling rate, adaptive's division
                # by 5), done before the callbacks: a model they pickle is that epoch's model.
                optimizer.iteration_ends(history.t)
                stop = _should_stop(history, settings, optimizer)
            if callbacks and publish is not None:
                publish()  # the estimator's n_iter_, loss_curve_, ... as a callback reads them
            notify(callbacks, "on_epoch_end", estimator, {
                "epoch": history.n_iter, "loss": float(history.loss), "validation_score": score,
                "seconds": seconds, "samples_per_second": n / seconds if seconds > 0 else math.inf,
            })
            if diverged:
                optimizer.restore(last_state)
                if not (ever_finite or trained):
                    raise NonFiniteTrainingError()
                _warn_divergence(history.n_iter)
                theta = last_good
                break
            last_good, last_state, ever_finite = copy(theta), optimizer.snapshot(copy), True
            unfinished = None
            if stop:
                break
            if settings.incremental:
                break
            if history.n_iter == settings.max_iter:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % settings.max_iter,
                    ConvergenceWarning,
                )
    except BaseException as cut_short:
        # Ctrl-C, a callback's error, a minibatch that weighs nothing, no finite epoch: the
        # model is the last completed epoch (the best with early stopping) with its optimizer
        # state and history, handed over before anything else can raise (a warnings filter
        # may turn the warning below into an error).
        optimizer.restore(last_state)
        if unfinished is not None:
            # Cut short after its loss was recorded (in the validation score, the verbose
            # output or a callback): the epoch goes from the history as its weights went.
            history.rollback(unfinished)
        theta = _kept(history, last_good)
        keep_parameters(theta)
        if not isinstance(cut_short, KeyboardInterrupt):
            raise
        warnings.warn(
            "Training interrupted by user. The model keeps the parameters of the last "
            "completed epoch (the best ones with early stopping); fit again with "
            "warm_start=True to continue."
        )
    return _kept(history, theta)


def _kept(history: History, theta):
    """What a fit ends with, finished or cut short: ``theta`` (the last completed epoch's
    parameters), or with early stopping the best ones. Their snapshot is handed over, not
    kept: scikit-learn's restored coefs_ *are* its best-weights arrays, updated in place
    from then on, so a later warm fit that never improves keeps its own last weights."""
    if history.early_stopping and history.best_theta is not None:
        best, history.best_theta = history.best_theta, None
        return best
    return theta


def _should_stop(history: History, settings: LoopSettings, optimizer) -> bool:
    """scikit-learn's rule: more than ``n_iter_no_change`` epochs without a ``tol`` gain."""
    if history.no_improvement_count <= settings.n_iter_no_change:
        return False
    what = "Validation score" if history.early_stopping else "Training loss"
    message = "%s did not improve more than tol=%f for %d consecutive epochs." % (
        what, settings.tol, settings.n_iter_no_change)
    if optimizer.trigger_stopping(message, settings.verbose):
        return True
    history.no_improvement_count = 0
    return False


def _warn_divergence(epoch: int) -> None:
    warnings.warn(
        f"Training diverged at epoch {epoch}: the loss or the weights became NaN or "
        "infinite, so training stopped and the parameters of the last finite epoch are "
        "kept. Try a lower learning_rate_init, "
        "or scale the inputs (for example with StandardScaler).",
        DivergenceWarning,
    )
