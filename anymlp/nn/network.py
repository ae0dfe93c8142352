"""Forward and backward passes over one flat parameter vector ``theta``.

``theta`` holds every weight matrix, then every bias vector, in layer order:
the layout of scikit-learn's ``_pack``, so L-BFGS needs no packing and an
optimizer step is a few elementwise passes over one array, whatever the depth.

``X`` may be a scipy sparse matrix on the NumPy path: it is only ever used
through the ``@`` operator and ``.T``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from anymlp._backend import fused_kernels_allowed, is_tensor, numpy_expit, squared_norm
from anymlp.kernels import affine_kernels_for, fused_for
from anymlp.nn.activations import ACTIVATIONS, DERIVATIVES
from anymlp.nn.losses import CANONICAL_OUTPUT, LossTerms, fused_log_loss_applies, loss_delta_and_column_sums
from anymlp.optim.gradient import UnscaledGradient


@dataclass(frozen=True)
class Layout:
    """Where each layer's weights and biases live inside ``theta``.

    ``units`` is ``(n_features, *hidden_layer_sizes, n_outputs)``.
    """

    units: tuple

    @cached_property
    def coef_slices(self) -> list[tuple[int, int, tuple[int, int]]]:
        out, start = [], 0
        for fan_in, fan_out in zip(self.units[:-1], self.units[1:]):
            out.append((start, start + fan_in * fan_out, (fan_in, fan_out)))
            start += fan_in * fan_out
        return out

    @property
    def n_coef(self) -> int:
        return self.coef_slices[-1][1]

    @cached_property
    def intercept_slices(self) -> list[tuple[int, int]]:
        out, start = [], self.n_coef
        for fan_out in self.units[1:]:
            out.append((start, start + fan_out))
            start += fan_out
        return out

    @property
    def n_params(self) -> int:
        return self.intercept_slices[-1][1]

    @property
    def n_layers(self) -> int:
        """Number of weight layers (scikit-learn's ``n_layers_ - 1``)."""
        return len(self.units) - 1


def unpack(theta, layout: Layout, *, xp):
    """Views of ``theta`` as the lists ``(coefs, intercepts)``."""
    if type(theta) is np.ndarray or is_tensor(theta):
        # Twice a batch: array-api-compat's reshape costs 0.5-1.2 us more a call.
        coefs = [theta[a:b].reshape(shape) for a, b, shape in layout.coef_slices]
    else:
        coefs = [xp.reshape(theta[a:b], shape) for a, b, shape in layout.coef_slices]
    intercepts = [theta[a:b] for a, b in layout.intercept_slices]
    return coefs, intercepts


@dataclass(frozen=True)
class Architecture:
    """What a forward pass needs besides the parameters.

    ``output`` overrides the output activation of :func:`forward` (the loss's
    canonical one otherwise); training always pairs the loss with its own.
    """

    layout: Layout
    activation: str
    loss: str
    output: str | None = None

    @property
    def out_activation(self) -> str:
        return self.output or CANONICAL_OUTPUT[self.loss]


def forward(theta, X, arch: Architecture, *, xp, keep=True, output_activation=True):
    """All layer outputs ``[X, A_1, ..., P]`` (``keep=True``), or just ``P``.

    With ``output_activation=False`` the last entry is the output layer's
    pre-activation ``Z`` instead of ``P``. Shapes: X (n, units[0]) -> P (n,
    units[-1]); same namespace and device as theta.
    """
    coefs, intercepts = unpack(theta, arch.layout, xp=xp)
    return _forward_layers(coefs, intercepts, X, arch, xp=xp, keep=keep, output_activation=output_activation)


def _forward_layers(coefs, intercepts, X, arch: Architecture, *, xp, keep, output_activation):
    activations = [X]
    a = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        if i < len(coefs) - 1:
            a = _hidden_layer(a, W, b, arch.activation, xp=xp)
        else:
            z = _affine(a, W, b, xp=xp)
            a = ACTIVATIONS[arch.out_activation](z, xp=xp) if output_activation else z
        if keep:
            activations.append(a)
    return activations if keep else a


def _affine(a, W, b, *, xp):
    """``a @ W + b``, a fresh array: what follows may overwrite it."""
    fused = affine_kernels_for(a, W, b)
    if fused is not None:
        return fused.affine(a, W, b)  # torch: one addmm
    z = a @ W
    z += b  # in place: saves a pass over the layer
    return z


def _hidden_layer(a, W, b, activation, *, xp):
    """``activation(a @ W + b)``: fused into one launch after the product where a kernel can."""
    fused = affine_kernels_for(a, W, b)
    if fused is not None:  # torch: addmm, then the activation in place
        z = fused.affine(a, W, b)
        return fused.relu_(z) if activation == "relu" else ACTIVATIONS[activation](z, xp=xp)
    return _add_bias_and_activate(a @ W, b, activation, xp=xp)


def _add_bias_and_activate(z, b, activation, *, xp):
    """A hidden layer's output from ``z = a @ W`` (overwritten)."""
    if activation == "relu":
        fused = fused_for(z, b)
        if fused is not None and hasattr(fused, "add_bias_relu"):  # NumPy: one numba pass
            fused.add_bias_relu(z, b)
            return z
    in_place = _NUMPY_BIAS_AND_ACTIVATION.get(activation) if type(z) is np.ndarray else None
    if in_place is not None:
        in_place(z, b)
        return z
    z += b  # in place: saves a pass over the layer
    return ACTIVATIONS[activation](z, xp=xp)


# On NumPy, ``z = activation(z + b)`` written over z (the layer's own array) with the same
# ufuncs as ACTIVATIONS', which return a new array: for _add_bias_and_activate, and taken
# once per fit by the lean step.
def _add_bias(z, b):
    z += b


def _add_bias_tanh(z, b):
    z += b
    np.tanh(z, out=z)


def _add_bias_logistic(z, b):
    z += b
    numpy_expit(z, out=z)


_NUMPY_BIAS_AND_ACTIVATION = {"identity": _add_bias, "tanh": _add_bias_tanh, "logistic": _add_bias_logistic}


class StepWorkspace:
    """What the consecutive steps of one stochastic fit share: the layers' views of theta
    (kept while theta is the same array, which the optimizers update in place) and one
    gradient buffer with its views, written in full at each step.

    Slicing a flat torch tensor into its layers costs ~26 us (NumPy ~4), twice a step: on
    a GPU at small batches a step lasts as long as the host takes to prepare it. For
    gradients used up within their step only (the stochastic loop's ``finish=False``):
    L-BFGS hands each gradient to SciPy, which keeps it.
    """

    def __init__(self, layout: Layout):
        self.layout = layout
        self._theta = self._theta_views = None
        self._grad = self._grad_views = None
        self._splits: dict = {}
        self._lean = None  # (theta, arch, the lean step or None), see lean_step

    def lean_step(self, theta, X, Y, sample_weight, arch: Architecture, *, xp):
        """The straight-line step for this batch (:class:`_LeanNumpyStep`,
        :class:`_LeanTorchStep`), or None where the general code must run. Decided once for
        theta and the network; the batch's own arrays and the kernels setting are checked
        at every step. Sample weights go where the general code puts them (the loss and the
        weight sum), so they need no check here."""
        if not (LEAN_STEPS and Y.shape == (X.shape[0], self.layout.units[-1])):
            return None
        lean = _LeanNumpyStep if type(theta) is np.ndarray else _LeanTorchStep if is_tensor(theta) else None
        if lean is None or not lean.takes(theta, X, Y):
            return None
        if not fused_kernels_allowed():  # (asked before the cache: what is kept must not depend on it)
            return None
        kept = self._lean
        if kept is None or kept[0] is not theta or kept[1] is not arch:
            self._lean = kept = (theta, arch, lean.make(theta, arch, self, xp=xp))
        return kept[2]

    def split(self, a):
        """``(a[:n_coef], a[n_coef:])``: weights and biases, views kept while ``a`` is the same
        array (theta, the gradient buffer and the optimizer's state are, all through a fit)."""
        kept = self._splits.get(id(a))
        if kept is None or kept[0] is not a:
            if len(self._splits) >= 8:  # arrays that do not persist (a library without in-place updates)
                self._splits.clear()
            n = self.layout.n_coef
            kept = self._splits[id(a)] = (a, (a[:n], a[n:]))
        return kept[1]

    def views(self, theta, *, xp):
        if theta is not self._theta:
            self._theta, self._theta_views = theta, unpack(theta, self.layout, xp=xp)
        return self._theta_views

    def gradient_buffer(self, theta, lib, *, xp):
        """``(flat, (coefs, intercepts))``: an array like theta from ``lib``, and its views."""
        grad = self._grad
        if grad is None or (grad.dtype, getattr(grad, "device", None)) != (theta.dtype, getattr(theta, "device", None)):
            self._grad = grad = lib.empty_like(theta)
            self._grad_views = unpack(grad, self.layout, xp=xp)
        return grad, self._grad_views


# The stochastic loop takes the lean steps where they apply (tests switch them off to compare).
LEAN_STEPS = True


class _LeanStep:
    """:func:`loss_and_grad`'s stochastic step written straight through, for a library's fused
    kernels (NumPy's numba loops: :class:`_LeanNumpyStep`; torch's ops:
    :class:`_LeanTorchStep`), with any hidden activation, loss and sample weights: the
    softmax with the log loss through its fused kernel where that applies (unweighted
    batches), the others through :func:`~anymlp.nn.losses.loss_delta_and_column_sums`.

    The same operations in the same order as the general code, so the same results
    (tests/test_kernels.py, tests/test_torch_kernels.py compare them), without its
    per-call decisions: the general step makes ~100 Python calls around its ~30 array
    operations, and at MNIST's sizes, where the products flush the caches between them,
    those cost ~50 us a step (config C's step ~600 us); on a GPU at small batches a step
    lasts as long as the host takes to launch it. Everything here is decided once per
    fit and theta, the hidden layers' delta functions too (:func:`_hidden_delta`'s choice,
    by activation and width). A subclass gives the forward pass and the L2 penalty, the two
    places where the general code's NumPy and torch operations differ, and ``prepare``s
    what they need from theta once.
    """

    @classmethod
    def make(cls, theta, arch: Architecture, workspace: "StepWorkspace", *, xp):
        layout = arch.layout
        kernels = fused_for(theta)
        if kernels is None:  # (theta's library's kernels: lean_step chose the class by theta)
            return None
        step = cls()
        step.lib = np if type(theta) is np.ndarray else sys.modules["torch"]
        step.kernels, step.loss, step.layout, step.activation, step.xp = kernels, arch.loss, layout, arch.activation, xp
        derivative = functools.partial(_derivative_without_sums, DERIVATIVES[arch.activation], xp=xp)
        step.hidden_deltas = [_delta_kernel(kernels, arch.activation, width) or derivative
                              for width in layout.units[1:-1]]
        step.fused_loss = fused_log_loss_applies(kernels, arch.loss, layout.units[-1], theta.dtype)
        step.coefs, step.intercepts = workspace.views(theta, xp=xp)
        step.grad, (step.grad_coefs, step.grad_intercepts) = workspace.gradient_buffer(theta, step.lib, xp=xp)
        step.split = workspace.split
        step.prepare(theta)
        return step

    def __call__(self, X, Y, alpha, sample_weight=None):
        activations, xp = self.forward(X), self.xp
        z, n = activations.pop(), X.shape[0]
        sw_sum = n if sample_weight is None else xp.sum(sample_weight)
        if self.fused_loss and sample_weight is None:  # loss_delta_and_column_sums, its fused branch
            per_output, delta, delta_sums = self.kernels.softmax_log_loss(z, Y)
            loss = LossTerms(per_output, -1.0, n)
        else:
            loss, delta, delta_sums = loss_delta_and_column_sums(self.loss, z, Y, sample_weight, sw_sum, xp=xp)
        if alpha:
            loss = LossTerms(loss.per_output, loss.scale, sw_sum, self.penalties(), alpha)
        lib, coefs, grad_coefs, grad_intercepts = self.lib, self.coefs, self.grad_coefs, self.grad_intercepts
        for i in range(len(coefs) - 1, -1, -1):  # _backward, _PackedGradient.set_layer
            lib.matmul(activations[i].T, delta, out=grad_coefs[i])
            if delta_sums is None:
                lib.sum(delta, 0, out=grad_intercepts[i])
            else:
                grad_intercepts[i][...] = delta_sums
            if i:  # _hidden_delta
                delta, delta_sums = self.hidden_deltas[i - 1](activations[i], delta @ coefs[i].T)
        return loss, UnscaledGradient(self.grad, self.layout.n_coef, alpha, sw_sum, xp, self.split)


class _LeanNumpyStep(_LeanStep):
    @staticmethod
    def takes(theta, X, Y) -> bool:
        """The batch's arrays as the numba kernels want them: NumPy, theta's dtype, labels
        C-contiguous (X may have any strides: only the products read it)."""
        return (type(X) is np.ndarray and type(Y) is np.ndarray and X.dtype == theta.dtype
                and Y.dtype == theta.dtype and Y.flags.c_contiguous)

    def prepare(self, theta):
        self.weights = [theta[a:b] for a, b, _ in self.layout.coef_slices]
        self.activate = (self.kernels.add_bias_relu if self.activation == "relu"  # (_add_bias_and_activate's choice)
                         else _NUMPY_BIAS_AND_ACTIVATION[self.activation])

    def forward(self, X) -> list:
        """``[X, A_1, ..., Z]``: _forward_layers on NumPy, the output's pre-activation last."""
        activate, coefs, intercepts = self.activate, self.coefs, self.intercepts
        activations, a, last = [X], X, len(coefs) - 1
        for i in range(last):  # _hidden_layer
            a = a @ coefs[i]
            activate(a, intercepts[i])  # in place
            activations.append(a)
        z = a @ coefs[last]  # _affine
        z += intercepts[last]
        activations.append(z)
        return activations

    def penalties(self) -> tuple:
        return tuple([np.dot(w, w) for w in self.weights])  # _weight_penalties: one per layer


class _LeanTorchStep(_LeanStep):
    @staticmethod
    def takes(theta, X, Y) -> bool:
        """The batch's tensors as the general code's kernels want them: theta's dtype and device,
        no autograd, labels contiguous (X may have any strides: addmm takes them)."""
        torch = sys.modules["torch"]
        dtype, device = theta.dtype, theta.device
        return (isinstance(X, torch.Tensor) and isinstance(Y, torch.Tensor) and X.dtype == dtype
                and Y.dtype == dtype and X.device == device and Y.device == device and Y.is_contiguous()
                and not (X.requires_grad or Y.requires_grad))

    def prepare(self, theta):
        self.weights = theta[: self.layout.n_coef]
        self.activate = (self.kernels.relu_ if self.activation == "relu"  # (what _hidden_layer calls)
                         else functools.partial(ACTIVATIONS[self.activation], xp=self.xp))

    def forward(self, X) -> list:
        """``[X, A_1, ..., Z]``: _forward_layers with torch's kernels (addmm, clamp_min_)."""
        affine, activate, coefs, intercepts = self.kernels.affine, self.activate, self.coefs, self.intercepts
        activations, a, last = [X], X, len(coefs) - 1
        for i in range(last):  # _hidden_layer
            a = activate(affine(a, coefs[i], intercepts[i]))
            activations.append(a)
        activations.append(affine(a, coefs[last], intercepts[last]))  # _affine
        return activations

    def penalties(self) -> tuple:
        return (squared_norm(self.weights, xp=self.xp),)  # _weight_penalties: one over all the weights


def loss_and_grad(theta, X, Y, sample_weight, arch: Architecture, alpha: float, *, xp, finish=True,
                  workspace: StepWorkspace | None = None):
    """Regularised loss (0-d array) and its gradient (flat, like ``theta``).

    The L2 term ``0.5 * alpha * ||W||^2 / sw_sum`` covers the weights only,
    which are the first ``n_coef`` entries of ``theta``. ``sample_weight`` is
    (n,) or None; ``sw_sum`` is then n. With ``finish=False`` both come
    unfinished, for the stochastic loop: the loss as
    :class:`~anymlp.nn.losses.LossTerms`, combined once per epoch on the host,
    and the gradient as an :class:`~anymlp.optim.gradient.UnscaledGradient`,
    finished by the optimizer inside its update; with a ``workspace``, the raw
    gradient is its buffer, overwritten by the next call.
    """
    if workspace is not None:
        assert not finish, "a workspace's gradient buffer is rewritten by the next step"
        lean = workspace.lean_step(theta, X, Y, sample_weight, arch, xp=xp)
        if lean is not None:
            return lean(X, Y, alpha, sample_weight)
        coefs, intercepts = workspace.views(theta, xp=xp)
    else:
        coefs, intercepts = unpack(theta, arch.layout, xp=xp)
    activations = _forward_layers(coefs, intercepts, X, arch, xp=xp, keep=True, output_activation=False)
    sw_sum = X.shape[0] if sample_weight is None else xp.sum(sample_weight)
    loss, delta, delta_sums = loss_delta_and_column_sums(arch.loss, activations[-1], Y, sample_weight, sw_sum,
                                                         xp=xp)
    if alpha:  # (not dataclasses.replace: a third of the cost of a tiny fit's epoch end)
        loss = LossTerms(loss.per_output, loss.scale, loss.sw_sum, _weight_penalties(theta, arch.layout, xp=xp), alpha)
    grad = UnscaledGradient(_backward(theta, coefs, activations, delta, delta_sums, arch, xp=xp, workspace=workspace),
                            arch.layout.n_coef, alpha, sw_sum, xp, None if workspace is None else workspace.split)
    if not finish:
        return loss, grad
    return loss.value(xp=xp), grad.finish(theta)


def _weight_penalties(theta, layout: Layout, *, xp) -> tuple:
    """``||W||^2`` in parts: on NumPy one dot product per layer, scikit-learn's (the loss
    adds them in order, for its bits); elsewhere one inner product over all the weights,
    one launch whatever the depth."""
    if type(theta) is np.ndarray:
        return tuple(np.dot(theta[a:b], theta[a:b]) for a, b, _ in layout.coef_slices)
    return (squared_norm(theta[: layout.n_coef], xp=xp),)


def _backward(theta, coefs, activations, delta, delta_sums, arch: Architecture, *, xp, workspace=None):
    """Unregularised, unnormalised gradient, packed in ``theta``'s layout.

    ``delta_sums`` is ``sum(delta, axis=0)`` where the loss's kernel took it, else None.
    """
    packed = _PackedGradient(theta, arch.layout, delta, xp=xp, workspace=workspace)
    for i in range(len(coefs) - 1, -1, -1):
        packed.set_layer(i, activations[i].T, delta, delta_sums)
        if i > 0:
            delta, delta_sums = _hidden_delta(arch.activation, activations[i], delta @ coefs[i].T, xp=xp)
    return packed.flat()


def _hidden_delta(activation, z, delta, *, xp):
    """A hidden layer's delta from its output ``z`` and ``delta @ W.T`` (overwritten), and the
    delta's column sums where a kernel takes them in the same pass (NumPy), else None."""
    kernel = _delta_kernel(fused_for(delta, z), activation, z.shape[1])
    if kernel is not None:
        return kernel(z, delta)
    return _derivative_without_sums(DERIVATIVES[activation], z, delta, xp=xp)


def _derivative_without_sums(derivative, z, delta, *, xp):
    return derivative(z, delta, xp=xp), None


# The kernels that give a hidden layer's delta and its column sums (the layer's bias gradient)
# in one pass, by activation: a reduction less per hidden layer and step. (torch's relu one
# leaves the sums to torch's reduction and says so with None.)
_DELTA_KERNELS = {"relu": "zero_where_zero_column_sums", "tanh": "tanh_derivative_column_sums",
                  "logistic": "logistic_derivative_column_sums"}


def _delta_kernel(kernels, activation, width):
    """``kernels``' ``f(z, delta) -> (delta, column sums or None)`` for a hidden layer of
    ``width`` units, or None. Not for one column: NumPy sums a single column pairwise, not
    row after row."""
    if kernels is None or width < 2 or activation not in _DELTA_KERNELS:
        return None
    return getattr(kernels, _DELTA_KERNELS[activation], None)


class _PackedGradient:
    """Layer gradients written straight into one flat array where the library has ``out=``.

    On NumPy and torch, ``matmul(..., out=)`` into views of the flat gradient
    saves a copy of all parameters per step (a third of a millisecond at (512,
    512) on NumPy; on a GPU, a launch and a pass over the parameters); the
    array API has no ``out=``, so other namespaces collect and concatenate.
    """

    def __init__(self, theta, layout: Layout, delta, *, xp, workspace=None):
        self._xp = xp
        self._lib = lib = _library_with_out(theta, delta)
        if lib is None:
            self._flat = None
            self._coefs, self._intercepts = [None] * layout.n_layers, [None] * layout.n_layers
        elif workspace is not None:
            self._flat, (self._coefs, self._intercepts) = workspace.gradient_buffer(theta, lib, xp=xp)
        else:
            self._flat = lib.empty_like(theta)
            self._coefs, self._intercepts = unpack(self._flat, layout, xp=xp)

    def set_layer(self, i, a_transposed, delta, delta_sums=None):
        """Layer ``i``'s gradient; its bias part is ``delta_sums`` when given (the column
        sums of ``delta``, taken by a kernel on the way), else summed here."""
        xp, lib = self._xp, self._lib
        if self._flat is None:
            self._coefs[i] = xp.reshape(a_transposed @ delta, (-1,))
            self._intercepts[i] = xp.sum(delta, axis=0) if delta_sums is None else delta_sums
            return
        if lib is np and not isinstance(a_transposed, np.ndarray):  # scipy sparse X in the first layer
            self._coefs[i][...] = a_transposed @ delta
        else:
            lib.matmul(a_transposed, delta, out=self._coefs[i])
        if delta_sums is None:
            lib.sum(delta, 0, out=self._intercepts[i])
        else:
            self._intercepts[i][...] = delta_sums

    def flat(self):
        if self._flat is not None:
            return self._flat
        return self._xp.concat(self._coefs + self._intercepts)


def _library_with_out(theta, delta):
    """NumPy for NumPy theta; torch where its fused kernels run (so not under autograd, and
    not with ``kernels="array_api"``, which keeps the portable concatenation); else None.

    ``delta`` depends on every input, so it requires grad when any of them does.
    """
    if type(theta) is np.ndarray:
        return np
    if is_tensor(theta) and fused_for(theta, delta) is not None:
        import torch  # loaded already: theta is a tensor

        return torch
    return None
