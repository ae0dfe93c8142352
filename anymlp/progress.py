"""Show training progress: a tqdm bar per epoch on a terminal, one plain line per epoch elsewhere.

:class:`ProgressPrinter` implements the callback protocol of
:mod:`anymlp.training.callbacks`; pass it in ``callbacks=[ProgressPrinter()]``. It only
reads the per-epoch record the training loop already brought to the host, so it adds no
device synchronisation.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from typing import TextIO

__all__ = ["ProgressPrinter", "format_epoch"]


def format_epoch(record, max_epochs: int | None = None) -> str:
    """One line for one epoch record: epoch, loss, validation score, seconds, samples/s."""
    width = len(str(max_epochs)) if max_epochs else 1
    epoch = f"{record['epoch']:>{width}d}" + (f"/{max_epochs}" if max_epochs else "")
    parts = [f"epoch {epoch}", f"loss {record['loss']:.6f}"]
    if record.get("validation_score") is not None:
        parts.append(f"val {record['validation_score']:.4f}")
    parts.append(f"{record['seconds']:.2f} s")
    if _rate(record):
        parts.append(f"{record['samples_per_second']:,.0f} samples/s")
    return "  ".join(parts)


def _rate(record) -> bool:
    """Whether the record has a meaningful throughput (L-BFGS may report none or NaN)."""
    rate = record.get("samples_per_second")
    return rate is not None and math.isfinite(rate) and rate > 0


class ProgressPrinter:
    """Print per-epoch progress to ``stream``.

    Parameters
    ----------
    stream : file-like, default=sys.stdout (looked up when fitting starts)
    bar : bool or None, default=None
        Draw a tqdm bar per epoch (advanced after each batch). None: only when
        ``stream`` is a terminal and tqdm is installed. Without a bar, one line per
        epoch is written (see :func:`format_epoch`).
    """

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None):
        self.stream = stream
        self.bar = bar

    # -- callback protocol ------------------------------------------------
    def on_fit_begin(self, estimator, *, max_epochs: int, n_batches: int) -> None:
        self._out = self.stream if self.stream is not None else sys.stdout
        self._max_epochs = max_epochs
        self._n_batches = n_batches
        self._tqdm = self._tqdm_class() if self._use_bar() else None
        self._bar = None
        self.records = []

    def on_epoch_begin(self, estimator, *, epoch: int) -> None:
        if self._tqdm is not None:
            self._close_bar()
            self._bar = self._tqdm(
                total=self._n_batches,
                desc=f"epoch {epoch}/{self._max_epochs}",
                unit="batch",
                file=self._out,
                leave=True,
                dynamic_ncols=True,
            )

    def on_batch_end(self, estimator, *, batch: int, n_batches: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, estimator, record) -> None:
        self.records.append(dict(record))
        if self._bar is not None:
            self._bar.set_postfix_str(_postfix(record), refresh=False)
            self._close_bar()  # (full: every batch of the epoch has reported)
        elif self._out is not None:
            try:
                print(format_epoch(record, self._max_epochs), file=self._out, flush=True)
            except BrokenPipeError:  # `anymlp train | head`: the reader left; training goes on
                self._out = None

    def on_fit_end(self, estimator) -> None:
        # An epoch still open was cut short (Ctrl-C, an error): its bar stays where the
        # batches stopped, and says so.
        if self._bar is not None:
            self._bar.set_postfix_str("interrupted", refresh=False)
        self._close_bar()

    # -- helpers ------------------------------------------------------------
    def _use_bar(self) -> bool:
        if self.bar is not None:
            return self.bar
        isatty = getattr(self._out, "isatty", None)
        return bool(isatty and isatty()) and _has_width(self._out) and self._tqdm_class() is not None

    @staticmethod
    def _tqdm_class():
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm

    def _close_bar(self) -> None:
        bar, self._bar = getattr(self, "_bar", None), None
        if bar is not None:
            bar.close()

    _FIT_STATE = ("_out", "_tqdm", "_bar", "_max_epochs", "_n_batches")

    def __getstate__(self):
        # A fitted model keeps its callbacks; streams and bars cannot be pickled. The settings
        # (a subclass's too) and the records go; the fit's own state (_out, _bar, ...) does not.
        state = {name: value for name, value in self.__dict__.items() if name not in self._FIT_STATE}
        state["stream"] = None
        return state

    def __deepcopy__(self, memo):
        """A copy (scikit-learn's ``clone`` makes one for each fit of a search) prints to the
        same stream; only a pickle drops it."""
        twin = type(self).__new__(type(self))
        for name, value in self.__getstate__().items():
            setattr(twin, name, copy.deepcopy(value, memo))
        twin.stream = self.stream
        return twin


def _has_width(stream) -> bool:
    """A terminal that reports its width: one reporting 0 columns (``script`` without a size, some
    CI runners) gets blank bars from tqdm, and with them no loss at all."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def _postfix(record) -> str:
    text = f"loss={record['loss']:.5f}"
    if record.get("validation_score") is not None:
        text += f", val={record['validation_score']:.4f}"
    return text + (f", {record['samples_per_second']:,.0f} samples/s" if _rate(record) else "")
