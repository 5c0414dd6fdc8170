"""CPython's ``random`` (MT19937) on the device: one generator per thread, pixel for pixel the host's.

A batch's generators are the columns of one ``uint32`` array ``st`` of shape ``(625, batch)``: rows
0..623 hold a generator's words, row 624 its position (``random.getstate()``'s layout, one column per
thread, so a warp reads a row at once). :func:`next_word` is MT19937's tempered output;
:func:`random`, :func:`randint` and :func:`uniform` are CPython's ``random.random``,
``random.randint`` and ``random.uniform`` over it, rounding through :mod:`fractalshards.gpu.ops`;
:func:`skip_randoms` moves past ``count`` ``random()`` draws without tempering them (as the host's
:func:`fractalshards.mt19937.skip_randoms` does). Any family's kernels may use them.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import ops

__all__ = ["N", "twist", "next_word", "random", "randint", "uniform", "skip_randoms"]

#: MT19937's words; row ``N`` of a state array is the position.
N = 624
INV_2_53 = 1.0 / 9007199254740992.0


@cuda.jit(device=True)
def twist(st, b):
    """Generator ``b``'s next 624 words (MT19937's twist, in place)."""
    for kk in range(N):
        y = (np.int64(st[kk, b]) & 0x80000000) | (np.int64(st[(kk + 1) % N, b]) & 0x7FFFFFFF)
        v = np.int64(st[(kk + 397) % N, b]) ^ (y >> 1)
        if y & 1:
            v ^= 0x9908B0DF
        st[kk, b] = np.uint32(v)


@cuda.jit(device=True)
def next_word(st, b):
    """Generator ``b``'s next tempered 32-bit word."""
    index = np.int64(st[N, b])
    if index >= N:
        twist(st, b)
        index = 0
    y = np.int64(st[index, b])
    st[N, b] = np.uint32(index + 1)
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y


@cuda.jit(device=True)
def random(st, b):
    """``random.random()`` of generator ``b``: 53 bits in [0, 1)."""
    hi = np.float64(next_word(st, b) >> 5)
    lo = np.float64(next_word(st, b) >> 6)
    return ops.mul(ops.add(ops.mul(hi, 67108864.0), lo), INV_2_53)


@cuda.jit(device=True)
def randint(st, b, lo, hi):
    """``random.randint(lo, hi)`` of generator ``b`` (CPython's rejection on the top bits)."""
    n = hi - lo + 1
    k = 0
    m = n
    while m:
        k += 1
        m >>= 1
    r = next_word(st, b) >> (32 - k)
    while r >= n:
        r = next_word(st, b) >> (32 - k)
    return lo + r


@cuda.jit(device=True)
def uniform(st, b, lo, hi):
    """``random.uniform(lo, hi)`` of generator ``b``."""
    return ops.add(lo, ops.mul(ops.sub(hi, lo), random(st, b)))


@cuda.jit(device=True)
def skip_randoms(st, b, count):
    """Move generator ``b`` past ``count`` ``random()`` draws (two words each) without tempering them."""
    left = 2 * count
    while left > 0:
        index = np.int64(st[N, b])
        if index >= N:
            twist(st, b)
            index = 0
        take = min(left, N - index)
        st[N, b] = np.uint32(index + take)
        left -= take
