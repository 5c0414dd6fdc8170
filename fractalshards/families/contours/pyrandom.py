"""Python's ``random`` module (MT19937, CPython's draws) replayed in compiled code.

The official VisualAtom and RCDB generators draw everything from
``random.seed(thread + 1)``; replaying a thread means tens of millions of draws
per category, too slow in Python. These kernels hold the generator in a plain
``uint32`` array (624 words and the position) and give, call for call, the values
CPython gives: ``random()``, ``getrandbits(k)`` for ``k <= 32``, ``randint`` (with
its rejection sampling), ``uniform`` and ``expovariate``; ``skip_randoms(n)``
advances by ``n`` calls of ``random()`` without computing them.
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel

__all__ = [
    "new_state",
    "seed",
    "random",
    "getrandbits",
    "randbelow",
    "randint",
    "uniform",
    "expovariate",
    "skip_randoms",
    "fill_random",
]

_N = 624
_M = 397


def new_state(n: int) -> np.ndarray:
    """A generator seeded like ``random.seed(n)`` for a non-negative integer ``n`` below 2**32."""
    state = np.zeros(_N + 1, np.uint32)
    seed(state, n)
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
    for kk in range(_N):
        y = (mt[kk] & np.uint32(0x80000000)) | (mt[(kk + 1) % _N] & np.uint32(0x7FFFFFFF))
        v = mt[(kk + _M) % _N] ^ (y >> np.uint32(1))
        if y & np.uint32(1):
            v ^= np.uint32(0x9908B0DF)
        mt[kk] = v


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


@kernel
def _tempered(state, idx):
    y = state[idx]
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@kernel
def fill_random(state, out):
    """``out[i] = random()`` of the MT19937 ``state`` (numpy's ``random_sample`` and CPython's ``random()``,
    :func:`fractalshards.families.contours.pyrandom.random` call for call), the position kept in a
    register: 3x the per-call loop."""
    idx = np.int64(state[624])
    for i in range(out.shape[0]):
        if idx >= 624:
            _twist(state)
            idx = 0
        a = np.float64(_tempered(state, idx) >> np.uint32(5))
        idx += 1
        if idx >= 624:
            _twist(state)
            idx = 0
        b = np.float64(_tempered(state, idx) >> np.uint32(6))
        idx += 1
        out[i] = (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)
    state[624] = np.uint32(idx)
