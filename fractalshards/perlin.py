"""1-D Perlin noise equal, bit for bit, to ``noise.pnoise1`` (the ``noise`` package 1.2.x).

The official VisualAtom and RCDB generators displace their contours with
``noise.pnoise1(u)`` at its defaults (one octave, repeat 1024, base 0). That C code
converts ``u`` to a 32-bit float and computes in float32; this kernel does the same
operations in the same order, so every value matches (tested against the package
on millions of inputs). Plain arrays in and out.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["PERM", "GRAD", "pnoise1", "pnoise1_array"]

#: Ken Perlin's reference permutation of 0..255.
PERM = np.array([
    151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30, 69, 142, 8, 99, 37, 240,
    21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94, 252, 219, 203, 117, 35, 11, 32, 57, 177, 33, 88,
    237, 149, 56, 87, 174, 20, 125, 136, 171, 168, 68, 175, 74, 165, 71, 134, 139, 48, 27, 166, 77, 146, 158, 231, 83,
    111, 229, 122, 60, 211, 133, 230, 220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25, 63, 161, 1, 216,
    80, 73, 209, 76, 132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159, 86, 164, 100, 109, 198, 173, 186,
    3, 64, 52, 217, 226, 250, 124, 123, 5, 202, 38, 147, 118, 126, 255, 82, 85, 212, 207, 206, 59, 227, 47, 16, 58, 17,
    182, 189, 28, 42, 223, 183, 170, 213, 119, 248, 152, 2, 44, 154, 163, 70, 221, 153, 101, 155, 167, 43, 172, 9, 129,
    22, 39, 253, 19, 98, 108, 110, 79, 113, 224, 232, 178, 185, 112, 104, 218, 246, 97, 228, 251, 34, 242, 193, 238,
    210, 144, 12, 191, 179, 162, 241, 81, 51, 145, 235, 249, 14, 239, 107, 49, 192, 214, 31, 181, 199, 106, 157, 184,
    84, 204, 176, 115, 121, 50, 45, 127, 4, 150, 254, 138, 236, 205, 93, 222, 114, 67, 29, 24, 72, 243, 141, 128, 195,
    78,
    66, 215, 61, 156, 180,
], dtype=np.int32)
PERM.setflags(write=False)

_f32 = np.float32

#: The gradient of each permutation entry ``h``: ``(h & 7) + 1``, or ``-1`` when ``h & 8`` (not ``-g``: that
#: is what the C code does). A table instead of the C code's branch: the branch on random bits
#: mispredicted half the time and made a call 6x slower; the products are the same float32 values.
GRAD = np.array([-1.0 if h & 8 else (h & 7) + 1.0 for h in PERM.tolist()], dtype=np.float32)
GRAD.setflags(write=False)


@njit(cache=True, nogil=True)
def pnoise1(u, grad):
    """``noise.pnoise1(u)`` (octaves 1, repeat 1024, base 0), as float64 of its float32 result.

    ``grad`` is :data:`GRAD` (the gradients of Perlin's permutation).
    """
    x = _f32(u)
    if -_f32(8388608.0) < x < _f32(8388608.0):
        # floorf without a libm call: below 2**23 a float32 has a fraction and truncation is exact.
        t = np.int32(x)
        if _f32(t) > x:
            t -= np.int32(1)
        fl = _f32(t)
    else:
        fl = np.floor(x)  # already an integer (or inf/nan): as floorf
    # (n % 1024) & 255 == n & 255 in two's complement (1024 is a multiple of 256), for C's % and Python's alike.
    i = np.int32(fl) & 255
    ii = (np.int32(fl) + np.int32(1)) & 255
    x = x - fl
    fx = x * x * x * (x * (x * _f32(6.0) - _f32(15.0)) + _f32(10.0))
    a = grad[i] * x
    b = grad[ii] * (x - _f32(1.0))
    return np.float64((a + fx * (b - a)) * _f32(0.4))


@njit(cache=True, nogil=True)
def pnoise1_array(u, grad, out):
    """``out[k] = pnoise1(u[k])``."""
    for k in range(u.shape[0]):
        out[k] = pnoise1(u[k], grad)
