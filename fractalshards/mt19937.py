"""The official generators' MT19937 streams replayed in compiled code: CPython's ``random`` and
numpy's legacy ``RandomState``.

The official VisualAtom, RCDB and SegRCDB generators draw everything from ``random.seed(...)``,
ExFractalDB's from numpy's legacy global generator; replaying them means tens of millions of
draws, too slow in Python. These kernels hold the generator in a plain ``uint32`` array (624
words and the position) and give, call for call, the values CPython gives: ``random()``,
``getrandbits(k)`` for ``k <= 32``, ``randint`` (with its rejection sampling), ``uniform`` and
``expovariate``; ``skip_randoms(n)`` advances by ``n`` calls of ``random()`` without computing
them; :func:`fill_random` gives a block of ``random()`` values. numpy's legacy ``random_sample``
is the same 53-bit double; :func:`np_randint` and :func:`np_uniform` are its ``randint`` (masked
rejection on the low bits) and ``uniform``. Tested call for call against both libraries.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import kernel

__all__ = [
    "new_state",
    "numpy_state",
    "seed",
    "random",
    "getrandbits",
    "randbelow",
    "randint",
    "uniform",
    "expovariate",
    "skip_randoms",
    "fill_random",
    "np_randint",
    "np_uniform",
]

_N = 624
_M = 397


def new_state(n: int) -> np.ndarray:
    """A generator seeded like ``random.seed(n)`` for a non-negative integer ``n`` below 2**32."""
    state = np.zeros(_N + 1, np.uint32)
    seed(state, n)
    return state


def numpy_state(seed: int) -> np.ndarray:
    """A generator in the state of numpy's legacy ``np.random.RandomState(seed)``."""
    _, key, pos, _, _ = np.random.RandomState(seed).get_state(legacy=True)
    state = np.zeros(_N + 1, np.uint32)
    state[:_N] = key
    state[_N] = pos
    return state


@kernel
def _init_genrand(mt, s):
    mt[0] = np.uint32(s)
    for i in range(1, _N):
        prev = np.uint64(mt[i - 1])
        mt[i] = np.uint32((np.uint64(1812433253) * (prev ^ (prev >> np.uint64(30))) + np.uint64(i)) & np.uint64(0xFFFFFFFF))


@kernel
def seed(state, n):
    """``random.seed(n)`` for ``0 <= n < 2**32`` (CPython's init_by_array with one key word)."""
    mt = state
    _init_genrand(mt, 19650218)
    mask = np.uint64(0xFFFFFFFF)
    key = np.uint64(n)
    i, j = 1, 0
    for _ in range(_N):  # max(624, len(key))
        prev = np.uint64(mt[i - 1])
        mt[i] = np.uint32(
            ((np.uint64(mt[i]) ^ (((prev ^ (prev >> np.uint64(30))) * np.uint64(1664525)) & mask)) + key + np.uint64(j)) & mask
        )
        i += 1
        j = 0  # one key word
        if i >= _N:
            mt[0] = mt[_N - 1]
            i = 1
    for _ in range(_N - 1):
        prev = np.uint64(mt[i - 1])
        mt[i] = np.uint32(
            ((np.uint64(mt[i]) ^ (((prev ^ (prev >> np.uint64(30))) * np.uint64(1566083941)) & mask)) - np.uint64(i)) & mask
        )
        i += 1
        if i >= _N:
            mt[0] = mt[_N - 1]
            i = 1
    mt[0] = np.uint32(0x80000000)
    state[_N] = np.uint32(_N)


@kernel
def _twist(mt):
    # Three loops without a modulo and the matrix applied by a mask, not a branch: every loop
    # vectorises (the second reads words the first wrote, 227 back).
    upper, lower, matrix, one = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF), np.uint32(1)
    for kk in range(_N - _M):
        y = (mt[kk] & upper) | (mt[kk + 1] & lower)
        mt[kk] = mt[kk + _M] ^ (y >> one) ^ (matrix & (np.uint32(0) - (y & one)))
    for kk in range(_N - _M, _N - 1):
        y = (mt[kk] & upper) | (mt[kk + 1] & lower)
        mt[kk] = mt[kk + _M - _N] ^ (y >> one) ^ (matrix & (np.uint32(0) - (y & one)))
    y = (mt[_N - 1] & upper) | (mt[0] & lower)
    mt[_N - 1] = mt[_M - 1] ^ (y >> one) ^ (matrix & (np.uint32(0) - (y & one)))


@kernel
def _next(state):
    index = state[_N]
    if index >= _N:
        _twist(state)
        index = 0
    state[_N] = index + 1
    return _tempered(state, index)


@kernel
def random(state):
    """``random.random()``: 53 bits from two 32-bit outputs."""
    a = np.float64(_next(state) >> np.uint32(5))
    b = np.float64(_next(state) >> np.uint32(6))
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)


@kernel
def skip_randoms(state, count):
    """Advance by ``count`` calls of ``random()`` (two outputs each) without tempering them."""
    left = 2 * count
    while left > 0:
        index = state[_N]
        if index >= _N:
            _twist(state)
            index = 0
        take = min(left, _N - np.int64(index))
        state[_N] = np.uint32(index + take)
        left -= take


@kernel
def getrandbits(state, k):
    """``random.getrandbits(k)`` for ``1 <= k <= 32``."""
    return np.int64(_next(state) >> np.uint32(32 - k))


@kernel
def randbelow(state, n):
    """``random._randbelow(n)`` for ``1 <= n <= 2**32``: getrandbits of n's bit length, rejected until below ``n``."""
    k = 0
    m = n
    while m:
        k += 1
        m >>= 1
    r = getrandbits(state, k)
    while r >= n:
        r = getrandbits(state, k)
    return r


@kernel
def randint(state, a, b):
    """``random.randint(a, b)``."""
    return a + randbelow(state, b - a + 1)


@kernel
def uniform(state, a, b):
    """``random.uniform(a, b)``."""
    return a + (b - a) * random(state)


@kernel
def expovariate(state, lambd):
    """``random.expovariate(lambd)``."""
    return -math.log(1.0 - random(state)) / lambd


@kernel(inline="always")
def _temper(y):
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@kernel
def _tempered(state, idx):
    return _temper(state[idx])


@kernel
def fill_random(state, out):
    """``out[i] = random()`` of the MT19937 ``state`` (numpy's ``random_sample`` and CPython's ``random()``,
    :func:`random` call for call): each twisted block's pairs converted in vectorised loops."""
    words = np.empty(_N, np.uint32)
    idx = np.int64(state[_N])
    i = 0
    n = out.shape[0]
    while i < n:
        if idx >= _N:
            _twist(state)
            idx = 0
        if idx == _N - 1:  # a pair across two blocks
            a = np.float64(_temper(state[_N - 1]) >> np.uint32(5))
            _twist(state)
            b = np.float64(_temper(state[0]) >> np.uint32(6))
            idx = 1
            out[i] = (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)
            i += 1
            continue
        m = min((_N - idx) // 2, n - i)
        # Tempered into a run first, then paired: both loops vectorise (one strided loop did not).
        for k in range(2 * m):
            words[k] = _temper(state[idx + k])
        for k in range(m):
            # Below 2**27 the words convert exactly through int32, which vectorises.
            a = np.float64(np.int32(words[2 * k] >> np.uint32(5)))
            b = np.float64(np.int32(words[2 * k + 1] >> np.uint32(6)))
            out[i + k] = (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)
        i += m
        idx += 2 * m
    state[_N] = np.uint32(idx)


@kernel
def np_randint(state, low, high):
    """numpy's legacy ``RandomState.randint(low, high)`` (``high`` excluded, a range below 2**32): the
    low bits of 32-bit outputs under the range's mask, drawn again until within the range."""
    rng = np.uint32(high - low - 1)
    if rng == 0:
        return np.int64(low)
    mask = rng
    mask |= mask >> np.uint32(1)
    mask |= mask >> np.uint32(2)
    mask |= mask >> np.uint32(4)
    mask |= mask >> np.uint32(8)
    mask |= mask >> np.uint32(16)
    v = _next(state) & mask
    while v > rng:
        v = _next(state) & mask
    return np.int64(low) + np.int64(v)


@kernel
def np_uniform(state, low, high):
    """numpy's legacy ``RandomState.uniform(low, high)``: ``low + (high - low) * random_sample()``."""
    return low + (high - low) * random(state)
