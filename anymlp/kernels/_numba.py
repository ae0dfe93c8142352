"""Fused loops for NumPy arrays, compiled by numba.

Each kernel does in one pass what the array-API reference in
:mod:`anymlp.kernels` does in several, with the same scalar operations in the
same order: no fast-math, so no reassociation and no contraction into fused
multiply-adds, and the results are bitwise equal to the reference
(tests/test_kernels.py). (The multiply-adds written out in ``_quotient`` make a
correctly rounded division without the divider.) The
scalars arrive already cast to the arrays' dtype, so float32 arrays are
computed in float32, as NumPy computes them with Python scalars.

Arrays are C-contiguous; the elementwise kernels take 1-D views (the caller
flattens), the row-wise ones (bias + ReLU, softmax with the log loss, the hidden
layers' derivatives with their column sums) 2-D arrays. Column sums are NumPy's axis-0
sums to the bit, but for the sign of a NaN where NaNs of both signs meet.

At the end, :func:`swap_mxcsr_bits` reaches the x86-64 register that holds
the subnormal modes, for ``set_config(flush_denormals=True)``.
"""

import math
import platform

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba.extending import intrinsic

# Longest row softmax takes (see _pairwise_sum).
MAX_SOFTMAX_COLUMNS = 128

# error_model="numpy": division by zero gives inf/nan as in NumPy instead of raising,
# which also lets LLVM vectorise the loops. cache=True: compiled once per machine.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


# Inlined into each loop that calls it, so the loops still vectorise.
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


# ---------------------------------------------------------------- division by the weight sum

# Finishing the gradient divides each parameter by the batch's weight sum, as scikit-learn
# does. In a float64 Adam step that division shares the divider with the step's own
# division and square root, and the divider bounds the loop. Multiplying by the
# reciprocal would change the bits. _quotient gets the correctly rounded quotient from
# y = RN(1/b) with fused multiply-adds (Markstein's correction): when q is within about an
# ulp of a/b, the remainder r = a - q*b is exact in one FMA and RN(q + r*y) = RN(a/b).
# q = RN(a*y) is within 1.5 ulp of a/b; the first correction brings it within one, the
# second rounds correctly (one already did on every case tested; the second keeps the
# argument short). The argument needs a, a/b and r far from overflow and from subnormal
# numbers (a subnormal remainder would also be flushed under flush_denormals=True):
# EXACT_RANGE bounds |a| and _divisor_and_reciprocal bounds 1/b; quotients outside are left to a
# division. tests/test_kernels.py compares with division on every float32 numerator of a
# binade for a set of divisors (other binades differ by exact powers of two) and on random
# float64s. Measured: Adam over 79,510 float64 parameters 226 -> 174 us a step.
#
# Adam in float64 only. SGD has one division a parameter and nothing else on the divider:
# the multiply-adds cost as much as they save (68 -> 104 us). A float32 division is
# 8-wide and cheap (Adam 67 -> 63 us), and float32's range would end at |a| >= 2**-56,
# which the border weights decaying under Adam cross within a few epochs.
EXACT_RANGE = (2.0**-900, 2.0**900)
_RECIPROCAL_RANGE = (2.0**-60, 2.0**60)
# Below this many parameters the division costs less than the multiply-add kernel's own
# call (measured: even at ~1500; 4000 parameters 13.0 -> 11.1 us, 500 3.7 -> 4.3 us).
RECIPROCAL_MIN_SIZE = 2048


def _has_fma() -> bool:
    """Does the CPU numba compiles for fuse multiply-adds in hardware? (Elsewhere llvm.fma
    is a libm call, twice as slow as dividing.)"""
    if numba.config.CPU_NAME not in (None, "host") or numba.config.CPU_FEATURES:
        return False  # a portable target (NUMBA_CPU_NAME=generic, say): not worth asking
    if platform.machine().lower() in ("arm64", "aarch64"):
        return True
    try:
        return bool(llvm.get_host_cpu_features().get("fma", False))
    except Exception:  # noqa: BLE001 - a platform llvmlite cannot describe: divide
        return False


_FMA = _has_fma()
_FLOAT64 = np.dtype(np.float64)


def _divisor_and_reciprocal(theta, sw_sum):
    """``(sw_sum, 1 / sw_sum)`` as float64 where the update may divide through ``_quotient``,
    else None."""
    if not _FMA or theta.dtype != _FLOAT64 or theta.shape[0] < RECIPROCAL_MIN_SIZE:
        return None
    divisor = float(sw_sum)
    if not (_RECIPROCAL_RANGE[0] <= abs(divisor) <= _RECIPROCAL_RANGE[1]):  # (NaN too)
        return None
    return divisor, 1.0 / divisor


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (llvm.fma)."""
    if not (isinstance(a, numba.types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@_inline
def _quotient(a, divisor, reciprocal, low, high):
    """``(a / divisor, left)`` with ``reciprocal = RN(1 / divisor)``: the quotient correctly
    rounded where ``a`` is zero or ``low <= |a| <= high`` (EXACT_RANGE), for a divisor
    whose reciprocal is in ``_RECIPROCAL_RANGE`` (``_divisor_and_reciprocal`` checks); elsewhere
    ``left`` is True and the quotient is not to be used."""
    q = a * reciprocal
    q = _fma(_fma(-q, divisor, a), reciprocal, q)
    q = _fma(_fma(-q, divisor, a), reciprocal, q)
    size = abs(a)
    zero = low - low  # a typed zero: a literal 0 would compare in float64 and stop a float32 loop vectorising
    left = (size != zero) & ((size < low) | (size > high) | (size != size))
    return (a * reciprocal if a == zero else q), left  # (a * reciprocal keeps the sign of a zero)


@_inline
def _adam_values(theta_i, m_i, v_i, g, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    """One parameter's ``(theta, m, v)`` after the step (scalars in and out: an inlined
    helper that takes arrays costs a reference count per element where the loop branches)."""
    m_i = beta_1 * m_i + one_minus_beta_1 * g
    v_i = beta_2 * v_i + one_minus_beta_2 * (g * g)
    return theta_i + (neg_step * m_i) / (math.sqrt(v_i) + epsilon), m_i, v_i


@_inline
def _adam_at(theta, m, v, i, g, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    theta[i], m[i], v[i] = _adam_values(theta[i], m[i], v[i], g, beta_1, one_minus_beta_1, beta_2,
                                        one_minus_beta_2, neg_step, epsilon)


@_jit
def adam(theta, grad, m, v, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    for i in range(theta.shape[0]):
        _adam_at(theta, m, v, i, grad[i], beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon)


def adam_unscaled(theta, raw, m, v, n_decayed, alpha, sw_sum, *constants, divide=False) -> bool:
    """``adam`` on the gradient ``finish_gradient`` would make of ``raw``, in the same pass.

    ``theta[i]`` is read for the L2 term before the update writes it, as the
    reference reads the weights before the step. ``constants``: ``beta_1,
    1 - beta_1, beta_2, 1 - beta_2, -step_size, epsilon``. Returns whether
    later steps should ``divide``: once quotients leave ``_quotient``'s range,
    the second pass that divides them costs more than the division it saves,
    ~3x the step where the weights are subnormal.
    """
    division = None if divide else _divisor_and_reciprocal(theta, sw_sum)
    if division is None:
        _adam_unscaled_dividing(theta, raw, m, v, n_decayed, alpha, sw_sum, *constants)
        return divide
    return _adam_unscaled_by_reciprocal(theta, raw, m, v, n_decayed, alpha, *division, *EXACT_RANGE, *constants)


@_inline
def _adam_unless_left(theta_i, m_i, v_i, numerator, sw_sum, reciprocal, low, high, constants):
    """One parameter's ``(theta, m, v, left)``: stepped with ``numerator / sw_sum`` from
    ``_quotient``, or as it was where the quotient is left."""
    g, left = _quotient(numerator, sw_sum, reciprocal, low, high)
    beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon = constants
    new_theta, new_m, new_v = _adam_values(theta_i, m_i, v_i, g, beta_1, one_minus_beta_1, beta_2,
                                           one_minus_beta_2, neg_step, epsilon)
    if left:
        return theta_i, m_i, v_i, left
    return new_theta, new_m, new_v, left


@_jit
def _adam_unscaled_by_reciprocal(theta, raw, m, v, n_decayed, alpha, sw_sum, reciprocal, low, high,
                                 beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    """``_adam_unscaled_dividing``, dividing by ``sw_sum`` through ``_quotient``; returns
    whether it left quotients.

    Parameters whose quotient it leaves keep their values in the first pass
    (a select, so the loop still vectorises) and are updated with
    a division afterwards: each parameter's update depends on its own values
    only, so the order does not matter. Which ones were left is recorded, not
    asked again: a weight updated in the first pass can leave the range then.
    """
    left_at = np.empty(theta.shape[0], np.bool_)
    any_left = False
    constants = beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon
    for i in range(n_decayed):  # two loops: a branch on i inside one would stop it vectorising
        theta[i], m[i], v[i], left_at[i] = _adam_unless_left(theta[i], m[i], v[i], raw[i] + alpha * theta[i],
                                                             sw_sum, reciprocal, low, high, constants)
        any_left |= left_at[i]
    for i in range(n_decayed, theta.shape[0]):
        theta[i], m[i], v[i], left_at[i] = _adam_unless_left(theta[i], m[i], v[i], raw[i],
                                                             sw_sum, reciprocal, low, high, constants)
        any_left |= left_at[i]
    if any_left:
        for i in range(theta.shape[0]):
            if left_at[i]:
                a = raw[i] + alpha * theta[i] if i < n_decayed else raw[i]  # theta[i] as it was
                _adam_at(theta, m, v, i, a / sw_sum, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2,
                         neg_step, epsilon)
    return any_left


@_jit
def _adam_unscaled_dividing(theta, raw, m, v, n_decayed, alpha, sw_sum,
                            beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon):
    for i in range(n_decayed):
        g = (raw[i] + alpha * theta[i]) / sw_sum
        _adam_at(theta, m, v, i, g, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon)
    for i in range(n_decayed, theta.shape[0]):
        g = raw[i] / sw_sum
        _adam_at(theta, m, v, i, g, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, neg_step, epsilon)


@_inline
def _sgd_at(theta, velocity, i, g, learning_rate, momentum, nesterov):
    vel = momentum * velocity[i] - learning_rate * g
    velocity[i] = vel
    if nesterov:
        theta[i] += momentum * vel - learning_rate * g
    else:
        theta[i] += vel


@_jit
def sgd(theta, grad, velocity, learning_rate, momentum, nesterov):
    for i in range(theta.shape[0]):
        _sgd_at(theta, velocity, i, grad[i], learning_rate, momentum, nesterov)


@_jit
def sgd_unscaled(theta, raw, velocity, n_decayed, alpha, sw_sum, learning_rate, momentum, nesterov):
    """``sgd`` on the gradient ``finish_gradient`` would make of ``raw``, in the same pass.

    Divides: the float64 ``_quotient`` costs an SGD step as much as the division it saves
    (one division a parameter, nothing else on the divider), where Adam has three.
    """
    for i in range(n_decayed):
        g = (raw[i] + alpha * theta[i]) / sw_sum
        _sgd_at(theta, velocity, i, g, learning_rate, momentum, nesterov)
    for i in range(n_decayed, theta.shape[0]):
        _sgd_at(theta, velocity, i, raw[i] / sw_sum, learning_rate, momentum, nesterov)


@_jit
def finish_gradient(grad, weights, alpha, add_penalty, sw_sum):
    n_coef = weights.shape[0]
    if add_penalty:
        for i in range(n_coef):
            grad[i] = (grad[i] + alpha * weights[i]) / sw_sum
    else:
        for i in range(n_coef):
            grad[i] = grad[i] / sw_sum
    for i in range(n_coef, grad.shape[0]):
        grad[i] = grad[i] / sw_sum


@_jit
def zero_where_zero(z, delta):
    for i in range(z.shape[0]):
        if z[i] == 0:
            delta[i] = 0


def zero_where_zero_column_sums(z, delta):
    """``zero_where_zero`` on (n, k) arrays, k >= 2, and the result's column sums in the same pass.

    Returns ``(delta, sums)``, ``sums`` bitwise ``np.sum(delta, axis=0)``: NumPy
    adds the rows of a C-contiguous array of two or more columns one after
    another from +0.0, as the loop does (where NaNs of both signs meet in a
    column, the sum's NaN may take the other sign). Saves a reduction per hidden layer
    and batch (~20 us at (200, 100) in the training loop).
    """
    sums = np.zeros(z.shape[1], z.dtype)
    _zero_where_zero_column_sums(z, delta, sums)
    return delta, sums


@_jit
def _zero_where_zero_column_sums(z, delta, sums):
    n, k = z.shape
    for i in range(n):
        for j in range(k):
            if z[i, j] == 0:
                delta[i, j] = 0
            sums[j] += delta[i, j]


def tanh_derivative_column_sums(z, delta):
    """``delta * (1 - z**2)`` (the tanh derivative from the layer's output ``z``) in place on
    (n, k) arrays, and the result's column sums, as ``zero_where_zero_column_sums`` (k >= 2
    for NumPy's order of the sums). NumPy's ``z**2`` is ``z * z``. Bitwise the reference but
    for the sign of a NaN where a NaN z meets a NaN delta of the other sign (NumPy's own
    loops disagree there between their vectorised part and the rest)."""
    return _smooth_derivative_column_sums(z, delta, logistic=False)


def logistic_derivative_column_sums(z, delta):
    """``delta * z * (1 - z)`` (the logistic derivative; the products from the left, as NumPy
    evaluates them) in place on (n, k) arrays, and the result's column sums; as
    ``tanh_derivative_column_sums``."""
    return _smooth_derivative_column_sums(z, delta, logistic=True)


def _smooth_derivative_column_sums(z, delta, logistic):
    sums = np.zeros(z.shape[1], z.dtype)
    _derivative_column_sums(z, delta, sums, z.dtype.type(1), logistic)
    return delta, sums


@_jit
def _derivative_column_sums(z, delta, sums, one, logistic):
    n, k = z.shape
    for i in range(n):
        for j in range(k):  # (a branch the same for every element: ~30 us at (256, 512) float32 either way)
            if logistic:
                value = delta[i, j] * z[i, j] * (one - z[i, j])
            else:
                value = delta[i, j] * (one - z[i, j] * z[i, j])
            delta[i, j] = value
            sums[j] += value


@_jit
def add_bias_relu(z, bias):
    """``z = maximum(z + bias, 0)`` row by row, in place; NaN stays NaN as in NumPy."""
    n, k = z.shape
    for i in range(n):
        for j in range(k):
            value = z[i, j] + bias[j]
            z[i, j] = 0 if value < 0 else value


def softmax(z):
    """Softmax of each row of ``z``, in place (and returned), bitwise equal to the reference.

    NumPy's SIMD exp sits between the two loops (numba's scalar exp was four
    times slower), and rows are summed in NumPy's pairwise order.
    """
    _subtract_row_max(z)
    np.exp(z, out=z)
    _normalise_rows(z, z.dtype.type(0))
    return z


@_jit
def _subtract_row_max(z):
    n, k = z.shape
    for i in range(n):
        row_max = z[i, 0]
        for j in range(1, k):
            # A NaN may not stay the maximum here, unlike in NumPy's max, but the row's sum
            # is NaN all the same, so the whole row ends NaN as in NumPy (a NaN's sign may differ).
            if not z[i, j] <= row_max:
                row_max = z[i, j]
        for j in range(k):
            z[i, j] -= row_max


@_jit
def _normalise_rows(e, zero):
    n, k = e.shape
    for i in range(n):
        row_sum = _pairwise_sum(e[i], 0, k, zero)
        for j in range(k):
            e[i, j] = e[i, j] / row_sum


def softmax_log_loss(z, y):
    """The softmax of ``z``'s rows, the log loss's per-output sums and the delta ``P - y``.

    Returns ``(sums, delta, delta_sums)``: ``sums[j]`` is ``np.sum(xlogy(y, clip(P, eps,
    1 - eps)), axis=0)[j]``, delta overwrites ``z``, and ``delta_sums`` is
    ``np.sum(delta, axis=0)`` (the output layer's bias gradient). Bitwise equal to the reference:
    ``math.log`` here is the C library's, which SciPy's ``xlogy`` calls too
    (for float32 since SciPy 1.16: the caller checks), and NumPy sums a
    C-contiguous array of two or more columns over axis 0 row after row from
    +0.0, as the loop below. Where NaNs of both signs meet (a diverged batch),
    a NaN's sign may differ from NumPy's. Only labels other than 0 take a
    logarithm: 200 rather than 2000 for a batch of MNIST.
    """
    _subtract_row_max(z)
    np.exp(z, out=z)
    zero, low, high = _CLIP_BOUNDS[z.dtype]
    sums, delta_sums = np.zeros(z.shape[1], z.dtype), np.zeros(z.shape[1], z.dtype)
    _normalise_rows_log_loss(z, y, sums, delta_sums, zero, low, high)
    return sums, z, delta_sums


# (0, eps, 1 - eps) per dtype: the log loss clips probabilities to [eps, 1 - eps], as scikit-learn.
_CLIP_BOUNDS = {np.dtype(t): (t(0), np.finfo(t).eps, t(1) - np.finfo(t).eps) for t in (np.float32, np.float64)}

if numba.config.USING_SVML:  # Intel's vectorised log need not round as the C library's: no fused loss
    del softmax_log_loss


@_jit
def _normalise_rows_log_loss(e, y, sums, delta_sums, zero, low, high):
    n, k = e.shape
    for i in range(n):
        row_sum = _pairwise_sum(e[i], 0, k, zero)
        for j in range(k):
            p = e[i, j] / row_sum
            e[i, j] = p - y[i, j]
            delta_sums[j] += e[i, j]
            clipped = low if p < low else (high if p > high else p)  # NaN stays NaN, as in np.clip
            value = zero if (y[i, j] == 0 and not math.isnan(clipped)) else y[i, j] * math.log(clipped)
            sums[j] += value  # from +0.0, as NumPy's axis-0 sum (a -0.0 value sums to +0.0)


@_jit
def _pairwise_sum(a, start, n, zero):
    """``sum(a[start:start + n])`` in NumPy's order (pairwise_sum in its add reduction), n <= 128.

    Below 8 values in order, up to 128 in 8 interleaved partial sums (NumPy
    splits longer rows in halves recursively; numba segfaults loading cached
    recursive functions, so longer rows take the reference path).
    tests/test_kernels.py checks it against np.sum. ``zero`` is +0.0 of a's dtype.
    """
    if n < 8:
        total = zero
        for i in range(n):
            total += a[start + i]
        return total
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[start + i]
        r1 += a[start + i + 1]
        r2 += a[start + i + 2]
        r3 += a[start + i + 3]
        r4 += a[start + i + 4]
        r5 += a[start + i + 5]
        r6 += a[start + i + 6]
        r7 += a[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += a[start + i]
        i += 1
    return total


# ---------------------------------------------------------------- the SSE control register

# MXCSR holds the x86-64 vector unit's rounding, masking and subnormal modes for the
# calling thread. FTZ (bit 15) writes subnormal results as 0 and DAZ (bit 6) reads
# subnormal inputs as 0, so no operation takes the ~100-cycle microcode path.
FLUSH_SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")
FTZ_DAZ = 0x8040


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.PointerType(ir.IntType(8))])
    fn = builder.module.declare_intrinsic(name, fnty=fnty)
    builder.call(fn, [builder.bitcast(slot, ir.PointerType(ir.IntType(8)))])


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return numba.types.uint32(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        builder.store(context.cast(builder, args[0], signature.args[0], numba.types.uint32), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return numba.types.void(value), codegen


if FLUSH_SUPPORTED:  # elsewhere the x86 intrinsics do not exist, and nothing calls this

    @numba.njit(cache=True)
    def swap_mxcsr_bits(bits, values):
        """Set the MXCSR ``bits`` of the calling thread to ``values``; returns MXCSR as it was.

        The register keeps the new bits after the call returns; ``bits=0``
        just reads it.
        """
        saved = np.int64(_stmxcsr())
        _ldmxcsr((saved & ~bits) | (values & bits))
        return saved
