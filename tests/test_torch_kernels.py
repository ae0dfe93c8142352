"""torch's compound in-place ops (anymlp.kernels._torch) against the array-API reference.

They may round differently (a fused multiply-add, torch's own softmax), so they must
agree with the reference to a few units in the last place, NaN and infinities in the
same places; they must launch fewer operations; and a training step must never read a
value back to the host.
"""

import warnings

import numpy as np
import pytest

import anymlp
from anymlp import MLPClassifier, MLPRegressor
from anymlp.nn import Architecture, Layout, loss_and_grad
from anymlp.nn.activations import relu_derivative
from anymlp.nn.losses import loss_delta_and_column_sums
from anymlp.nn.network import _affine, _hidden_layer
from anymlp.optim.gradient import finish_gradient
from anymlp.optim.adam import adam_init, adam_update
from anymlp.optim.sgd import sgd_init, sgd_update
from anymlp.testing import count_torch_ops

torch = pytest.importorskip("torch")
xt = pytest.importorskip("array_api_compat.torch")

DTYPES = ["float32", "float64"]
# A few units in the last place of the operands: relative, and absolute at the scale of
# the largest value (where a sum cancels, as in theta + step or P - Y, the relative
# difference of a small result can be large).
ULPS = 8


def _vector(rng, n, dtype, special=True):
    a = rng.standard_normal(n).astype(dtype)
    if special:
        a[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).tiny]
    return torch.tensor(a)


def _both(fn, *tensors):
    """``fn`` on fresh copies with the fused ops on, then off: (result, copies after) each."""
    results = []
    for kernels in ("auto", "array_api"):
        copies = [t.clone() for t in tensors]
        with anymlp.config_context(kernels=kernels):
            out = fn(*copies)
        results.append((out, copies))
    return results


def _assert_close(a, b, dtype):
    a, b = (np.asarray(t.detach().numpy() if hasattr(t, "detach") else t) for t in (a, b))
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    eps = np.finfo(dtype).eps
    scale = np.abs(b[np.isfinite(b)]).max(initial=1.0)
    np.testing.assert_allclose(a, b, rtol=ULPS * eps, atol=ULPS * eps * scale)


@pytest.fixture
def spy(monkeypatch):
    """Count calls into the torch kernels, to prove the fused path ran."""
    from anymlp.kernels import _torch

    calls = []
    for name in ("adam", "adam_unscaled", "sgd", "finish_gradient", "zero_where_zero", "affine", "relu_", "softmax",
                 "softmax_log_loss"):
        original = getattr(_torch, name)
        monkeypatch.setattr(_torch, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    return calls


@pytest.fixture(params=["fused kernel", "in-place ops"])
def adam_kernel(request, monkeypatch):
    """torch's fused Adam kernel (CPU, CUDA), or the seven in-place ops other devices get."""
    from anymlp.kernels import _torch

    if request.param == "in-place ops":
        monkeypatch.setattr(_torch, "FUSED_ADAM_DEVICES", ())
    with count_torch_ops() as ops:
        yield request.param
    assert ("_fused_adam_" in ops) == (request.param == "fused kernel")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_agrees_with_reference(dtype, spy, adam_kernel):
    rng = np.random.default_rng(0)
    theta, grad = _vector(rng, 1000, dtype), _vector(rng, 1000, dtype, special=False)
    _assert_three_adam_steps_agree(theta, grad, lambda grad: grad, dtype)
    assert spy.count("adam") == 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha, weighted", [(0.0, False), (1e-3, False), (1e-3, True)])
def test_adam_finishing_the_gradient_agrees_with_reference(dtype, alpha, weighted, spy, adam_kernel):
    """The training loop's path: an unscaled gradient, finished inside the update (where,
    without the fused kernel, the square root reuses its memory)."""
    from anymlp.optim.gradient import UnscaledGradient

    rng = np.random.default_rng(9)
    theta, raw = _vector(rng, 1000, dtype), _vector(rng, 1000, dtype, special=False) * 50
    sw_sum = torch.tensor(37.5, dtype=theta.dtype) if weighted else 64
    _assert_three_adam_steps_agree(theta, raw, lambda raw: UnscaledGradient(raw.clone(), 600, alpha, sw_sum, xt),
                                   dtype)
    assert spy.count("adam_unscaled") == 3
    if adam_kernel == "in-place ops":
        # The spent gradient held the denominator: no parameter-sized tensor was allocated for it.
        state, grad = adam_init(theta, xp=xt), UnscaledGradient(raw.clone(), 600, alpha, sw_sum, xt)
        adam_update(theta.clone(), grad, state, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, xp=xt)
        torch.testing.assert_close(grad.raw, torch.sqrt(state.v) + 1e-8, rtol=0, atol=0, equal_nan=True)


def test_fused_adam_leaves_the_step_count_alone():
    """One step-count tensor per device serves every step: the kernel must only read it."""
    from anymlp.kernels import _torch

    theta, grad = torch.ones(10), torch.full((10,), 0.5)
    m, v = torch.zeros(10), torch.zeros(10)
    count = _torch._step_without_bias_correction(theta.device)
    before = count.clone()
    for _ in range(3):
        _torch.adam(theta, grad, m, v, 0.9, 0.1, 0.999, 0.001, -1e-3, 1e-8)
    assert torch.equal(count, before) and _torch._step_without_bias_correction(theta.device) is count


def _assert_three_adam_steps_agree(theta, grad, gradient_of, dtype):
    def run(theta, grad):
        state = adam_init(theta, xp=xt)
        for _ in range(3):
            theta, state = adam_update(theta, gradient_of(grad), state, learning_rate=1e-3, beta_1=0.9,
                                       beta_2=0.999, epsilon=1e-8, xp=xt)
        return theta, state

    (fused, _), (reference, _) = _both(run, theta, grad)
    for a, b in zip((fused[0], fused[1].m, fused[1].v), (reference[0], reference[1].m, reference[1].v)):
        _assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_agrees_with_reference(dtype, nesterov, spy):
    rng = np.random.default_rng(1)
    theta, grad = _vector(rng, 1000, dtype), _vector(rng, 1000, dtype, special=False)

    def run(theta, grad):
        state = sgd_init(theta, xp=xt)
        for _ in range(3):
            theta, state = sgd_update(theta, grad, state, learning_rate=0.1, momentum=0.9, nesterov=nesterov)
        return theta, state.velocity

    (fused, _), (reference, _) = _both(run, theta, grad)
    assert spy.count("sgd") == 3
    for a, b in zip(fused, reference):
        _assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("weighted", [False, True])
def test_finish_gradient_agrees_with_reference(dtype, alpha, weighted, spy):
    rng = np.random.default_rng(2)
    grad, theta = _vector(rng, 300, dtype), _vector(rng, 300, dtype)
    sw_sum = torch.tensor(37.5, dtype=grad.dtype) if weighted else 64
    (fused, _), (reference, _) = _both(lambda g, t: finish_gradient(g, t, 200, alpha, sw_sum, xp=xt), grad, theta)
    assert spy == ["finish_gradient"]
    _assert_close(fused, reference, dtype)


def test_the_reference_finish_under_inference_mode_leaves_autograd_working():
    """The portable finish caches its L2 mask; one made under torch.inference_mode() must not
    be the one a later autograd step saves for backward (torch refuses inference tensors)."""
    from anymlp.optim.gradient import finish_gradient

    with anymlp.config_context(kernels="array_api"):
        with torch.inference_mode():
            finish_gradient(torch.ones(10), torch.ones(10), 6, 0.1, 5, xp=xt)
        theta = torch.ones(10, requires_grad=True)
        finish_gradient(torch.ones(10), theta, 6, 0.1, 5, xp=xt).sum().backward()
    expected = torch.tensor([0.1 / 5] * 6 + [0.0] * 4)
    torch.testing.assert_close(theta.grad, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hidden_layer_steps_agree_with_reference(dtype, spy):
    rng = np.random.default_rng(3)
    a, W = _vector(rng, 240, dtype).reshape(30, 8), _vector(rng, 160, dtype, special=False).reshape(8, 20)
    b = _vector(rng, 20, dtype, special=False)
    (fused, _), (reference, _) = _both(lambda a, W, b: _hidden_layer(a, W, b, "relu", xp=xt), a, W, b)
    _assert_close(fused, reference, dtype)
    assert (reference == 0).any() and reference.isnan().any()  # the derivative below sees both
    delta = _vector(rng, 600, dtype, special=False).reshape(30, 20)
    (fused, _), (reference, _) = _both(lambda a, d: relu_derivative(a, d, xp=xt), reference, delta)
    _assert_close(fused, reference, dtype)
    (fused, _), (reference, _) = _both(lambda a, W, b: _affine(a, W, b, xp=xt), a, W, b)
    _assert_close(fused, reference, dtype)
    assert spy == ["affine", "relu_", "zero_where_zero", "affine"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_relu_delta_takes_the_kernel_once_and_leaves_the_sums(dtype, spy):
    """The backward pass's ReLU derivative: one kernel call, the reference's values, and no
    column sums (torch takes them afterwards, in its own reduction)."""
    from anymlp.nn.network import _hidden_delta

    rng = np.random.default_rng(4)
    z = torch.clamp_min(_vector(rng, 600, dtype).reshape(30, 20), 0)
    delta = _vector(rng, 600, dtype, special=False).reshape(30, 20)
    (fused, _), (reference, _) = _both(lambda z, d: _hidden_delta("relu", z, d, xp=xt), z, delta)
    assert fused[1] is None and reference[1] is None
    _assert_close(fused[0], reference[0], dtype)
    assert spy == ["zero_where_zero"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 7, 16])
def test_softmax_log_loss_agrees_with_reference(dtype, k, spy):
    """Per-output loss parts, the loss and the delta, with probabilities clipped in both."""
    rng = np.random.default_rng(4)
    Z = torch.tensor(rng.normal(scale=5, size=(50, k)).astype(dtype))
    Y = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, k, 50)), k).to(Z.dtype)
    def run(z):
        terms, delta, _ = loss_delta_and_column_sums("log_loss", z, Y, None, 50, xp=xt)
        return terms.per_output, terms.value(xp=xt), delta

    (fused, _), (reference, _) = _both(run, Z)
    assert spy == ["softmax_log_loss", "softmax"]
    for a, b in zip(fused, reference):
        _assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_log_loss_clips_saturated_probabilities_at_both_ends(dtype, spy):
    """Every row saturated: each part is n * log(1 - eps) (or log(eps)) in both, so a clip
    bound missing on either side moves the parts far beyond a few units in the last place."""
    Z = torch.tensor([[100.0, 0.0]] * 30 + [[0.0, 100.0]] * 20, dtype=getattr(torch, dtype))
    for Y in (Z.gt(50).to(Z.dtype), Z.lt(50).to(Z.dtype)):  # on the large logit, then the small one
        def run(z):
            terms, delta, _ = loss_delta_and_column_sums("log_loss", z, Y, None, 50, xp=xt)
            return terms.per_output, delta

        (fused, _), (reference, _) = _both(run, Z)
        for a, b in zip(fused, reference):
            _assert_close(a, b, dtype)
    assert spy.count("softmax_log_loss") == 2


def test_weighted_log_loss_keeps_the_reference_loss_with_the_fused_softmax(spy):
    Z = torch.tensor(np.random.default_rng(4).normal(size=(20, 3)))
    Y = torch.nn.functional.one_hot(torch.arange(20) % 3, 3).double()
    loss_delta_and_column_sums("log_loss", Z, Y, torch.linspace(0.5, 1.5, 20), 20.0, xp=xt)
    assert spy == ["softmax"]


def _step_ops(kernels, optimizer, sample_weight=None):
    from anymlp.optim.stateful import AdamOptimizer, SGDOptimizer

    arch = Architecture(Layout((784, 512, 512, 10)), "relu", "log_loss")
    rng = np.random.default_rng(5)
    theta = torch.tensor(rng.uniform(-0.05, 0.05, arch.layout.n_params).astype(np.float32))
    X = torch.tensor(rng.uniform(size=(64, 784)).astype(np.float32))
    Y = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, 10, 64)), 10).float()
    with anymlp.config_context(kernels=kernels):
        opt = (AdamOptimizer if optimizer == "adam" else SGDOptimizer)(theta, xp=xt, learning_rate_init=1e-3)
        step = lambda: loss_and_grad(theta, X, Y, sample_weight, arch, 1e-4, xp=xt, finish=False)  # noqa: E731
        opt.step(theta, step()[1])  # the steady state: one-time setup uncounted
        with count_torch_ops() as backprop:  # the training loop's step: loss parts, raw gradient
            _, grad = step()
        with count_torch_ops() as update:  # the gradient's finish and the optimizer
            opt.step(theta, grad)
    return backprop, update


@pytest.mark.parametrize("optimizer, update_ops", [("adam", 2), ("sgd", 6)])
def test_fused_ops_launch_fewer_operations(optimizer, update_ops):
    """Two hidden layers: 49 operations per Adam step of the training loop on the reference
    code, 23 fused."""
    fused_backprop, fused_update = _step_ops("auto", optimizer)
    reference_backprop, reference_update = _step_ops("array_api", optimizer)
    assert sum(fused_update.values()) == update_ops < sum(reference_update.values())
    assert sum(fused_backprop.values()) == 21 < sum(reference_backprop.values()) == 34


def test_the_training_loops_adam_step_finishes_the_gradient_in_the_fused_kernel():
    """The loop's path (an unscaled gradient): the fused kernel divides by the sample count
    and adds the L2 term itself, one launch for the weights and one for the biases; with
    sample weights the division stays outside. No tensor is made per step."""
    from anymlp.optim.stateful import AdamOptimizer

    arch = Architecture(Layout((784, 512, 512, 10)), "relu", "log_loss")
    rng = np.random.default_rng(5)
    theta = torch.tensor(rng.uniform(-0.05, 0.05, arch.layout.n_params).astype(np.float32))
    X = torch.tensor(rng.uniform(size=(64, 784)).astype(np.float32))
    Y = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, 10, 64)), 10).float()
    for sample_weight, expected in ((None, {"_fused_adam_": 2}),
                                    (torch.linspace(0.5, 1.5, 64), {"add_": 1, "div_": 1, "_fused_adam_": 1})):
        opt = AdamOptimizer(theta, xp=xt, learning_rate_init=1e-3)
        for _ in range(2):  # the second step shows the steady state
            _, grad = loss_and_grad(theta, X, Y, sample_weight, arch, 1e-4, xp=xt, finish=False)
            with count_torch_ops() as update:
                opt.step(theta, grad)
        assert dict(update) == expected


@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_adam_on_a_workspaces_kept_views_is_the_same_step(alpha, monkeypatch):
    """The stochastic loop's Adam step takes the weight/bias views its workspace keeps (no
    slicing per step): bitwise the step on freshly sliced ones, over several steps."""
    from anymlp.nn import StepWorkspace
    from anymlp.optim.stateful import AdamOptimizer

    arch = Architecture(Layout((20, 16, 8, 4)), "relu", "log_loss")
    rng = np.random.default_rng(2)
    start = torch.tensor(rng.uniform(-0.3, 0.3, arch.layout.n_params).astype(np.float32))
    X = torch.tensor(rng.normal(size=(32, 20)).astype(np.float32))
    Y = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, 4, 32)), 4).float()
    calls = []
    real = StepWorkspace.split
    monkeypatch.setattr(StepWorkspace, "split", lambda self, a: calls.append(1) or real(self, a))
    results = []
    for workspace in (StepWorkspace(arch.layout), None):
        theta = start.clone()
        opt = AdamOptimizer(theta, xp=xt, learning_rate_init=1e-2)
        for _ in range(4):
            _, grad = loss_and_grad(theta, X, Y, None, arch, alpha, xp=xt, finish=False, workspace=workspace)
            opt.step(theta, grad)
        results.append((theta, opt.state.m, opt.state.v))
    # theta, gradient, m and v a step; without decay one launch covers all: nothing to split
    assert len(calls) == (16 if alpha else 0)
    for kept, sliced in zip(*results):
        torch.testing.assert_close(kept, sliced, rtol=0, atol=0)


@pytest.mark.parametrize("kernels", ["auto", "array_api"])
def test_a_training_step_never_reads_back_to_the_host(kernels):
    weights = torch.linspace(0.5, 1.5, 64)
    for optimizer in ("adam", "sgd"):
        for sample_weight in (None, weights):
            backprop, update = _step_ops(kernels, optimizer, sample_weight)
            assert not _host_reads(backprop + update)


# Operations that read a value back to the host: an explicit scalar, or an output whose
# shape depends on the data (boolean masks, nonzero, unique).
_HOST_READ = ("_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "masked_scatter",
              "unique", "_unique", "bincount", "repeat_interleave")


def _host_reads(op_names):
    return [name for name in op_names if name.startswith(_HOST_READ) or name == "index" or name == "index_put_"]


def _fit(estimator, X, y, kernels):
    with anymlp.config_context(kernels=kernels), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(torch.asarray(X), torch.asarray(y))


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_torch_fits_agree_with_fused_ops_on_or_off(solver, spy):
    from sklearn.datasets import make_classification, make_regression

    X, y = make_classification(n_samples=120, n_features=8, n_classes=3, n_informative=5, random_state=0)
    params = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=15, random_state=0)
    fused = _fit(MLPClassifier(**params), X, y, "auto")
    assert spy  # the fused path ran
    reference = _fit(MLPClassifier(**params), X, y, "array_api")
    assert fused.n_iter_ == reference.n_iter_
    Xt = torch.asarray(X)
    np.testing.assert_allclose(fused.predict_proba(Xt).numpy(), reference.predict_proba(Xt).numpy(), atol=1e-10)
    Xr, yr = make_regression(n_samples=120, n_features=8, random_state=0)
    fused = _fit(MLPRegressor(**params), Xr, yr / 100, "auto")
    reference = _fit(MLPRegressor(**params), Xr, yr / 100, "array_api")
    Xr = torch.asarray(Xr)
    np.testing.assert_allclose(fused.predict(Xr).numpy(), reference.predict(Xr).numpy(), rtol=1e-9)


def test_fused_ops_need_one_contiguous_float_layout():
    from anymlp.kernels import fused_for

    a = torch.zeros(6, dtype=torch.float64)
    assert fused_for(a, torch.ones(6, dtype=torch.float64)) is not None
    assert fused_for(a, torch.ones(6, dtype=torch.float32)) is None
    assert fused_for(torch.zeros(3, 2).T, torch.zeros(2, 3)) is None  # not contiguous
    assert fused_for(torch.zeros(6, dtype=torch.int64)) is None
    assert fused_for(a, np.ones(6)) is None
    # Code differentiating through the passes gets the reference, which autograd can record.
    assert fused_for(a, torch.ones(6, dtype=torch.float64, requires_grad=True)) is None
    assert fused_for(torch.zeros(6, dtype=torch.float64, requires_grad=True)) is None
    with anymlp.config_context(kernels="array_api"):
        assert fused_for(a) is None


def test_a_strided_input_keeps_the_one_launch_layer(spy):
    """addmm takes any strides: Fortran-ordered X (pandas data, say) still gets it."""
    rng = np.random.default_rng(6)
    a = torch.tensor(np.asfortranarray(rng.standard_normal((30, 8))))
    W, b = torch.tensor(rng.standard_normal((8, 20))), torch.tensor(rng.standard_normal(20))
    assert not a.is_contiguous()
    (fused, _), (reference, _) = _both(lambda a, W, b: _hidden_layer(a, W, b, "relu", xp=xt), a, W, b)
    _assert_close(fused, reference, "float64")
    assert spy == ["affine", "relu_"]


def test_a_bias_off_16_byte_alignment_agrees_too():
    """Layout (13, 7, 3) in float32 puts the output bias 12 bytes past a 16-byte boundary."""
    arch = Architecture(Layout((13, 7, 3)), "relu", "log_loss")
    rng = np.random.default_rng(7)
    theta = torch.tensor(rng.uniform(-0.5, 0.5, arch.layout.n_params).astype(np.float32))
    start, stop = arch.layout.intercept_slices[-1]
    bias, W = theta[start:stop], theta[91:112].reshape(7, 3)
    assert bias.data_ptr() % 16 != 0
    a = torch.tensor(rng.standard_normal((30, 7)).astype(np.float32))
    (fused, _), (reference, _) = _both(lambda a, W, b: _affine(a, W, b, xp=xt), a, W, bias)
    _assert_close(fused, reference, "float32")


def _assert_first_adam_step_close(stepped, ref_stepped, grad, dtype, learning_rate, epsilon=1e-8, beta_2=0.999):
    """Weights after a first Adam step from the same weights, within what the gradient's
    rounding allows. That step moves each weight by ``lr * g / (|g| + e)``, with ``e =
    epsilon / sqrt(1 - beta_2)`` (the bias corrections), whose slope in g is ``lr * e / (|g| +
    e)**2``: up to lr / e ~ 3000 where g is nearly 0. There, two products that add the same
    terms in different orders (torch may pick another GEMM for ``out=``) disagree in the last
    bits of a sum that cancels, and the step magnifies it; elsewhere it shrinks it."""
    a, b, g = (np.asarray(t.detach().numpy()) for t in (stepped, ref_stepped, grad))
    eps = np.finfo(dtype).eps
    e = epsilon / np.sqrt(1 - beta_2)
    grad_rounding = ULPS * eps * np.abs(g[np.isfinite(g)]).max(initial=1.0)
    atol = ULPS * eps * np.abs(b[np.isfinite(b)]).max(initial=1.0) + learning_rate * e * grad_rounding / (np.abs(g) + e) ** 2
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.all(np.abs(a - b) <= atol), f"worst: {np.max(np.abs(a - b) - atol)} over the bound"


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch on CUDA needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("finish", [True, False])  # False: the training loop's path (adam_unscaled)
@pytest.mark.parametrize("units", [(784, 512, 512, 10), (13, 7, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_agrees_with_the_reference_on_its_device(units, dtype, finish, device):
    """The fused step (on a GPU: cuBLASLt's addmm epilogue, out= into views of the flat
    gradient, in-place threshold_backward) against the portable code on the same device,
    with the same launch count on the GPU as on the CPU and no host read."""
    from anymlp.optim.stateful import AdamOptimizer

    arch = Architecture(Layout(units), "relu", "log_loss")
    rng = np.random.default_rng(8)
    theta = torch.tensor(rng.uniform(-0.05, 0.05, arch.layout.n_params).astype(dtype), device=device)
    X = torch.tensor(rng.uniform(size=(64, units[0])).astype(dtype), device=device)
    Y = torch.nn.functional.one_hot(torch.tensor(rng.integers(0, units[-1], 64)), units[-1]).to(X)
    results = []
    for kernels in ("auto", "array_api"):
        with anymlp.config_context(kernels=kernels):
            warm = theta.clone()  # one-time tensors (the fused Adam's step and sample counts) made here
            AdamOptimizer(warm, xp=xt, learning_rate_init=1e-3).step(
                warm, loss_and_grad(warm, X, Y, None, arch, 1e-4, xp=xt, finish=finish)[1])
            step_theta = theta.clone()
            opt = AdamOptimizer(step_theta, xp=xt, learning_rate_init=1e-3)
            with count_torch_ops() as ops:
                loss, grad = loss_and_grad(step_theta, X, Y, None, arch, 1e-4, xp=xt, finish=finish)
                opt.step(step_theta, grad)
            # The loop's path leaves the loss in parts, combined later (uncounted, as in the loop);
            # a finished gradient is left as it was, an unscaled one is scratch after the step.
            loss = loss if finish else loss.value(xp=xt)
            results.append((loss.cpu(), grad.cpu() if finish else None, step_theta.cpu(), ops))
    (loss, grad, stepped, ops), (ref_loss, ref_grad, ref_stepped, _) = results
    _assert_close(loss, ref_loss, dtype)
    if finish:
        _assert_close(grad, ref_grad, dtype)
    with anymlp.config_context(kernels="array_api"):
        finished = loss_and_grad(theta.clone(), X, Y, None, arch, 1e-4, xp=xt)[1].cpu()
    _assert_first_adam_step_close(stepped, ref_stepped, finished, dtype, learning_rate=1e-3)
    assert not _host_reads(ops)
    if units == (784, 512, 512, 10):
        assert sum(ops.values()) == (30 if finish else 23)


def test_the_l2_penalty_is_one_accurate_dot_product():
    """array-api-compat's torch vecdot is a (1, n) @ (n, 1) product: slow on the CPU, and its
    float32 sum over 670k weights was off by 7e-5 relative. torch's dot: 7e-8 on one host,
    1.1e-6 on an AMD Zen 4 (its accumulators depend on the CPU), so the bound is 1e-5."""
    from anymlp._backend import squared_norm

    w = torch.rand(668672, generator=torch.Generator().manual_seed(0))
    exact = float(np.dot(w.double().numpy(), w.double().numpy()))
    with count_torch_ops() as ops:
        value = squared_norm(w, xp=xt)
    assert dict(ops) == {"dot": 1}
    assert abs(float(value) - exact) <= 1e-5 * exact


# --------------------------------------------------------------------- the lean torch step


def _torch_step(theta, X, Y, weights, arch, alpha, lean):
    """One stochastic step's loss terms and raw gradient (cloned), and whether the lean step ran."""
    from anymlp.nn import network

    workspace = network.StepWorkspace(arch.layout)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(network, "LEAN_STEPS", lean)
        loss, grad = network.loss_and_grad(theta, X, Y, weights, arch, alpha, xp=xt, finish=False,
                                           workspace=workspace)
    ran = workspace._lean is not None and workspace._lean[2] is not None
    return loss, grad.raw.clone(), ran


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [(5,), (7, 3), (6, 1, 4)])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error", "binary_log_loss", "poisson"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("weighted", [False, True])
def test_lean_torch_step_is_the_general_torch_step(dtype, hidden, alpha, loss, activation, weighted):
    """The same torch operations in the same order: equal results (torch's CPU kernels are
    deterministic), loss parts and gradient alike."""
    from anymlp.nn.network import Architecture, Layout

    rng = np.random.default_rng(len(hidden))
    from tests.conftest import targets_for_loss

    Y = torch.tensor(targets_for_loss(loss, rng, 17, dtype))
    layout = Layout((6, *hidden, Y.shape[1]))
    arch = Architecture(layout, activation, loss)
    theta = torch.tensor((rng.standard_normal(layout.n_params) * 0.8).astype(dtype))
    X = torch.tensor((rng.standard_normal((17, 6)) * 2).astype(dtype))
    weights = torch.tensor(rng.uniform(0, 3, 17).astype(dtype)) if weighted else None
    lean_loss, lean_raw, lean_ran = _torch_step(theta, X, Y, weights, arch, alpha, lean=True)
    loss_terms, raw, ran = _torch_step(theta, X, Y, weights, arch, alpha, lean=False)
    assert lean_ran and not ran
    torch.testing.assert_close(lean_raw, raw, rtol=0, atol=0)
    torch.testing.assert_close(lean_loss.per_output, loss_terms.per_output, rtol=0, atol=0, equal_nan=True)
    assert len(lean_loss.penalties) == len(loss_terms.penalties) == (1 if alpha else 0)
    for a, b in zip(lean_loss.penalties, loss_terms.penalties):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (lean_loss.scale, lean_loss.alpha) == (loss_terms.scale, loss_terms.alpha)
    if weighted:  # a 0-d tensor, the weights' sum
        torch.testing.assert_close(lean_loss.sw_sum, loss_terms.sw_sum, rtol=0, atol=0)
    else:
        assert lean_loss.sw_sum == loss_terms.sw_sum == 17


@pytest.mark.parametrize("case", ["X requires grad", "float64 X", "strided Y", "array_api"])
def test_lean_torch_step_leaves_what_it_does_not_cover_to_the_general_step(case):
    from anymlp.nn import network
    from anymlp.nn.network import Architecture, Layout

    rng = np.random.default_rng(0)
    layout = Layout((4, 5, 3))
    arch = Architecture(layout, "relu", "log_loss")
    theta = torch.tensor(rng.standard_normal(layout.n_params).astype(np.float32))
    X = torch.tensor(rng.standard_normal((9, 4)).astype(np.float64 if case == "float64 X" else np.float32))
    X.requires_grad_(case == "X requires grad")
    Y = torch.tensor(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 9)])
    if case == "strided Y":
        Y = torch.tensor(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 9)].T.copy()).T
    weights = None
    kernels = "array_api" if case == "array_api" else "auto"
    workspace = network.StepWorkspace(layout)
    with anymlp.config_context(kernels=kernels):
        assert workspace.lean_step(theta, X, Y, weights, arch, xp=xt) is None
    if case == "array_api":  # the same workspace, asked again with the kernels on
        assert workspace.lean_step(theta, X, Y, weights, arch, xp=xt) is not None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_torch_fit_is_the_same_with_the_lean_step_or_without(solver, activation, monkeypatch):
    from sklearn.datasets import make_classification

    from anymlp.nn import network

    X, y = make_classification(400, 10, n_informative=6, n_classes=4, random_state=1)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    models, steps = [], []
    original = network._LeanTorchStep.__call__
    monkeypatch.setattr(network._LeanTorchStep, "__call__", lambda self, *a: (steps.append(1), original(self, *a))[1])
    for lean in (True, False):
        monkeypatch.setattr(network, "LEAN_STEPS", lean)
        models.append(anymlp.MLPClassifier(hidden_layer_sizes=(12, 7), activation=activation, solver=solver,
                                           batch_size=64, max_iter=4, tol=0, n_iter_no_change=99,
                                           random_state=0).fit(X, y))
    assert len(steps) == 4 * 7
    for a, b in zip(models[0].coefs_ + models[0].intercepts_, models[1].coefs_ + models[1].intercepts_):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert models[0].loss_curve_ == models[1].loss_curve_
