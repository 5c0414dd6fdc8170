"""Every counter-based random stream of fractalshards: keys, SplitMix64, uniforms, permutations.

A stream is named by labelled parts, e.g. ``("points", seed, category, weight)``;
:func:`stream_key` hashes them (BLAKE2b) into a 64-bit key. Value ``i`` of stream ``key``
is SplitMix64 of ``key + (i + 1) * golden``: it depends only on ``(key, i)``, so any slice of
any stream is made in any process, on any machine, without carrying state, and the same
parts give the same values everywhere (no numpy generator, no global seed).

Families draw their native streams from here (uniforms, the sample order's permutation,
FractalDB's patch masks through :func:`splitmix64`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .jit import kernel

__all__ = [
    "stream_key",
    "splitmix64",
    "uniform_at",
    "integer_at",
    "hash_uniforms",
    "hash_uniforms_from",
    "hash_permutation",
    "seeded_permutation",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_INV_2_53 = 1.0 / 9007199254740992.0


def stream_key(*parts: object) -> np.uint64:
    """A 64-bit stream key from labelled parts; the same parts give the same key anywhere."""
    text = ":".join(str(p) for p in ("fractalshards", *parts))
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


@kernel
def splitmix64(key, i):
    """Value ``i`` (uint64) of stream ``key``: SplitMix64's finaliser of ``key + (i + 1) * golden``."""
    z = key + (np.uint64(i) + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@kernel
def uniform_at(key, i):
    """Value ``i`` of stream ``key`` as a float64 uniform in [0, 1) (53 bits)."""
    return np.float64(splitmix64(key, i) >> _S11) * _INV_2_53


@kernel
def integer_at(key, i, lo, hi):
    """Value ``i`` of stream ``key`` as an integer in ``lo .. hi`` (both included), as ``randint(lo, hi)``."""
    return np.int64(lo) + np.int64(uniform_at(key, i) * (np.int64(hi) - np.int64(lo) + 1))


@kernel
def hash_uniforms(key, out):
    """Fill ``out`` (float64) with uniforms in [0, 1) of stream ``key`` (uint64)."""
    for i in range(out.shape[0]):
        out[i] = uniform_at(key, i)


@kernel
def hash_uniforms_from(key, first, out):
    """Fill ``out`` (float64) with values ``first .. first + len(out) - 1`` of stream ``key`` as uniforms in [0, 1)."""
    for i in range(out.shape[0]):
        out[i] = uniform_at(key, first + i)


@kernel
def hash_permutation(key, out):
    """Fill ``out`` (int64) with a permutation of ``0 .. len(out) - 1`` drawn from stream ``key``.

    Fisher-Yates from the last position down; position ``i`` swaps with
    ``j = floor(u * (i + 1))``, ``u`` the ``i``-th value of the stream (53-bit
    uniforms: the bias is below 2**-30 for any realistic length). The same key
    gives the same permutation on any machine and numpy version.
    """
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        u = uniform_at(key, i)
        j = np.int64(u * (i + 1))
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


def seeded_permutation(n: int, *key_parts: object) -> np.ndarray:
    """A permutation of ``0 .. n-1`` from the stream keyed by ``key_parts``
    (the same on any machine and numpy version)."""
    out = np.empty(n, np.int64)
    hash_permutation(stream_key(*key_parts), out)
    return out
