"""Fused steps for torch tensors: torch's compound in-place ops, fewer kernel launches.

On a GPU, at batch sizes like 200, a training step's time goes to kernel
launches, one per array operation at least. torch has in-place operations
that each do what takes the reference several: ``add_(alpha=)``,
``addcmul_``, ``addcdiv_``, ``softmax``, and the fused Adam kernel of
``torch.optim.Adam(fused=True)``. The Adam update goes from 12 launches to
1 (7 where torch has no fused kernel), SGD with Nesterov from 7 to 4, the
end of the gradient from 4 to 2, the output softmax from 5 to 1 (with the log
loss and the delta after it, 10 to 5: ``special.xlogy``, ``sub_``), the ReLU
derivative from 2 to 1.

Unlike the numba loops these are not bitwise equal to the reference: torch
may compute ``a + alpha * b`` as one fused multiply-add and normalises the
softmax its own way, so each step agrees with the reference to a few units
in the last place (tests/test_torch_kernels.py), as torch's matrix products
already differ from NumPy's in the last bits. Over a training run those
differences compound like any reordering of float operations: digits, float32
Adam, 200 epochs ends with weights up to ~3e-3 apart and the same predictions.
The elementwise kernels have the signatures of :mod:`anymlp.kernels._numba`;
``affine`` and ``relu_`` are torch's own (numba keeps its bias + ReLU pass).
"""

import functools
import sys

import torch

MAX_SOFTMAX_COLUMNS = sys.maxsize


# Devices where torch's fused Adam kernel (the one ``torch.optim.Adam(fused=True)`` runs)
# is used: the CPU, where the tests run it, and CUDA. Others (MPS, XPU) keep the in-place
# ops until someone has run the kernel there.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(theta, grad, m, v, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon,
         scratch=None):
    """One Adam step in place: torch's fused kernel (one launch) where there is one, else
    seven in-place ops, whose ``sqrt(v) + eps`` goes into ``scratch`` (like theta, or None).
    """
    if theta.device.type in FUSED_ADAM_DEVICES:
        _fused_adam(theta, grad, m, v, beta_1, beta_2, neg_step, epsilon)
        return
    m.mul_(beta_1).add_(grad, alpha=one_minus_beta_1)
    v.mul_(beta_2).addcmul_(grad, grad, value=one_minus_beta_2)
    theta.addcdiv_(m, torch.sqrt(v, out=scratch).add_(epsilon), value=neg_step)


def _fused_adam(theta, grad, m, v, beta_1, beta_2, neg_step, epsilon, weight_decay=0.0, grad_scale=None):
    """torch's fused kernel on ``grad / grad_scale + weight_decay * theta`` (grad_scale None: 1)."""
    torch._fused_adam_([theta], [grad], [m], [v], [], [_step_without_bias_correction(theta.device)],
                       lr=-neg_step, beta1=beta_1, beta2=beta_2, weight_decay=weight_decay, eps=epsilon,
                       amsgrad=False, maximize=False, grad_scale=grad_scale)


@functools.lru_cache(maxsize=None)
def _step_without_bias_correction(device):
    """The step count to hand torch's fused Adam: one where its bias correction is exactly 1.

    anymlp folds scikit-learn's bias correction into the step size on the host
    (``adam_step_size``), so torch's kernel must not apply its own,
    ``1 - beta ** step``. At float32's largest value ``beta ** step`` is 0 for
    every beta < 1, so the kernel divides by exactly 1 and its update is
    scikit-learn's ``theta - step_size * m / (sqrt(v) + eps)``. The kernel
    reads the count and does not advance it (``torch.optim.Adam`` does that
    outside), so one tensor per device serves every step.
    """
    # float32, as torch.optim.Adam makes its counts, whatever torch's default dtype.
    return torch.full((), torch.finfo(torch.float32).max, dtype=torch.float32, device=device)


def adam_unscaled(theta, raw, m, v, n_decayed, alpha, sw_sum,
                  beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon, divide=False):
    """``adam`` on the gradient ``finish_gradient`` makes of ``raw``, which is scratch after.

    (``divide``: the NumPy kernel's hint, see ``anymlp.optim.adam.AdamState``; torch
    divides by a sample count in its fused kernel and ignores it.)

    With the fused kernel and a sample count (no weights), the kernel finishes
    the gradient itself: it divides by ``grad_scale`` and adds ``weight_decay
    * theta``, so ``raw / n + (alpha / n) * W``, the reference's ``(raw + alpha
    * W) / n`` to a few units in the last place; two launches (the weights,
    with decay, and the biases) instead of three, and two passes over the
    parameters less (on the CPU ~0.27 ms a step at 670k parameters). Its
    ``grad_scale`` is read as float32, which holds any sample count exactly;
    a sum of sample weights takes the reference's two steps.

    Otherwise: the same operations as finishing and then stepping. Without
    the fused kernel the square root goes into ``raw`` once the moments have
    read it: a fresh tensor of the size of theta per step cost the CPU ~2 ms
    of page faults at 670k parameters (the square root alone: ~0.1 ms).
    """
    split = lambda a: (a[:n_decayed], a[n_decayed:])  # noqa: E731
    adam_unscaled_split(split, theta, raw, m, v, n_decayed, alpha, sw_sum,
                        beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon)


def adam_unscaled_split(split, theta, raw, m, v, n_decayed, alpha, sw_sum,
                        beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    """``adam_unscaled`` taking the weight/bias views of theta, raw, m and v from ``split``
    (``a -> (a[:n_decayed], a[n_decayed:])``; a fit's workspace keeps them, where slicing
    them anew each step cost ~13 us)."""
    if theta.device.type in FUSED_ADAM_DEVICES and isinstance(sw_sum, int) and sw_sum < 2**24:
        scale = _sample_count(sw_sum, theta.device)
        if not n_decayed:  # nothing decays: one launch over everything
            _fused_adam(theta, raw, m, v, beta_1, beta_2, neg_step, epsilon, grad_scale=scale)
            return
        (theta_w, theta_b), (raw_w, raw_b), (m_w, m_b), (v_w, v_b) = (split(a) for a in (theta, raw, m, v))
        _fused_adam(theta_w, raw_w, m_w, v_w, beta_1, beta_2, neg_step, epsilon, weight_decay=alpha / sw_sum,
                    grad_scale=scale)
        _fused_adam(theta_b, raw_b, m_b, v_b, beta_1, beta_2, neg_step, epsilon, grad_scale=scale)
        return
    finish_gradient(raw, theta[:n_decayed], alpha, n_decayed > 0, sw_sum)
    adam(theta, raw, m, v, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon, scratch=raw)


@functools.lru_cache(maxsize=32)
def _sample_count(n, device):
    """``n`` as the float32 0-d tensor the fused kernel divides by (one per batch size and device)."""
    return torch.full((), n, dtype=torch.float32, device=device)


def sgd(theta, grad, velocity, learning_rate, momentum, nesterov):
    velocity.mul_(momentum).add_(grad, alpha=-learning_rate)
    if nesterov:
        theta.add_(velocity, alpha=momentum).add_(grad, alpha=-learning_rate)
    else:
        theta.add_(velocity)


def finish_gradient(grad, weights, alpha, add_penalty, sw_sum):
    if add_penalty:
        grad[: weights.shape[0]].add_(weights, alpha=alpha)
    grad.div_(sw_sum)  # a number, or a 0-d tensor on grad's device: no sync either way


def zero_where_zero(z, delta):
    """``delta = 0`` where the ReLU output ``z`` is 0, in place: ReLU's own backward op.

    ``threshold_backward`` zeroes where ``z <= 0``, which for ReLU outputs
    (>= 0 or NaN) is ``z == 0``; NaN keeps delta, as in the reference. One
    pass and no boolean mask: ``masked_fill_(z == 0, 0)`` was two launches,
    and on the CPU 27x slower at (256, 512) (655 vs 24 us).
    """
    torch.ops.aten.threshold_backward.grad_input(delta, z, 0, grad_input=delta)


def zero_where_zero_column_sums(z, delta):
    """``(zero_where_zero(z, delta), None)``: the numba kernel's signature, without the column
    sums, which torch takes in its own reduction afterwards (the None says so). Asked for
    first by the backward pass: a fallback through ``relu_derivative`` cost a second kernel
    lookup and two reshapes a hidden layer, ~5 us a step on the CPU."""
    zero_where_zero(z, delta)
    return delta, None


def affine(a, W, bias):
    """``a @ W + bias`` in one addmm (on CUDA, cuBLASLt can add the bias in the product's epilogue).

    torch hands cuBLASLt the bias pointer's alignment as the output's; a bias
    sliced out of theta at an offset that is not a multiple of 16 bytes
    (common in float32) would restrict it to slower kernels, and under-aligned
    biases have been reported to fault there. On CUDA such a bias takes the
    product and an in-place add instead (a host-side pointer check: no sync).
    Not yet measured on a GPU.
    """
    if bias.is_cuda and bias.data_ptr() % 16:
        return torch.mm(a, W).add_(bias)
    return torch.addmm(bias, a, W)


def relu_(z):
    return z.clamp_min_(0)


def softmax(z):
    return torch.softmax(z, dim=1)


def softmax_log_loss(z, y):
    """The softmax ``P`` of ``z``, the log loss's per-output sums ``sum(xlogy(Y, clip(P)),
    axis=0)`` and the delta ``P - Y`` (in P's memory): the signature of the numba kernel.

    One launch less than the reference (``xlogy`` is one op) and no new array for
    the delta. Where ``Y`` is 0, ``xlogy`` gives +0 and the reference's ``Y * log(P)``
    -0: the sums are the same numbers.
    """
    p = softmax(z)
    eps = torch.finfo(p.dtype).eps
    per_output = torch.sum(torch.special.xlogy(y, p.clamp(eps, 1 - eps)), dim=0)
    return per_output, p.sub_(y), None
