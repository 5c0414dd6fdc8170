"""Device arithmetic that rounds as the CPU kernels do, for the families' CUDA kernels.

With default options NVVM contracts ``a * b + c`` into one fused multiply-add, which rounds once
where the CPU rounds twice; the round-to-nearest intrinsics (``libdevice.dmul_rn``, ``dadd_rn``,
``ddiv_rn``; a subtraction adds the negation, which is exact; ``fadd_rn``, ``fsub_rn``, ``fmul_rn`` in
float32) are never contracted, so a walk written with them gives the CPU's
float64 values bit for bit (its PTX holds no ``fma``: tested with ``numba.cuda.compile_ptx``).
The counter-based streams (:mod:`fractalshards.seeds`) are the same integer arithmetic.

In numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the intrinsics are stubs, so the same
names are plain Python operations there: IEEE float64, round to nearest, never fused; the
SplitMix64 arithmetic is done on Python integers modulo 2**64.
"""

from __future__ import annotations

import numpy as np
from numba import cuda
from numba.core import config

__all__ = ["SIMULATED", "add", "sub", "mul", "div", "fadd", "fsub", "fmul", "splitmix64", "uniform_at", "mask_at", "pixel"]

#: True under numba's CUDA simulator (kernels run on the CPU, as Python).
SIMULATED = bool(config.ENABLE_CUDASIM)

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_M64 = (1 << 64) - 1
_INV_2_53 = 1.0 / 9007199254740992.0

if SIMULATED:

    @cuda.jit(device=True)
    def _add(a, b):
        return float(a) + float(b)

    @cuda.jit(device=True)
    def _sub(a, b):
        return float(a) - float(b)

    @cuda.jit(device=True)
    def _mul(a, b):
        return float(a) * float(b)

    @cuda.jit(device=True)
    def _div(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):  # IEEE, as error_model="numpy" on the CPU
            return float(np.float64(a) / np.float64(b))

    @cuda.jit(device=True)
    def _fadd(a, b):
        return np.float32(np.float32(a) + np.float32(b))

    @cuda.jit(device=True)
    def _fsub(a, b):
        return np.float32(np.float32(a) - np.float32(b))

    @cuda.jit(device=True)
    def _fmul(a, b):
        return np.float32(np.float32(a) * np.float32(b))

    @cuda.jit(device=True)
    def _splitmix64(key, i):
        z = (int(key) + (int(i) + 1) * _GOLDEN) & _M64
        z = ((z ^ (z >> 30)) * _MIX1) & _M64
        z = ((z ^ (z >> 27)) * _MIX2) & _M64
        return z ^ (z >> 31)

    @cuda.jit(device=True)
    def _uniform_at(key, i):
        return float(_splitmix64(key, i) >> 11) * _INV_2_53

    @cuda.jit(device=True)
    def _mask_at(key, i):
        return (((_splitmix64(key, i) >> 32) * 511) >> 32) + 1

else:  # pragma: no cover - compiled for a device (and to PTX in the tests), run where one exists
    from numba.cuda import libdevice

    _U_GOLDEN = np.uint64(_GOLDEN)
    _U_MIX1 = np.uint64(_MIX1)
    _U_MIX2 = np.uint64(_MIX2)
    _U1 = np.uint64(1)
    _S30, _S27, _S31, _S11, _S32 = (np.uint64(s) for s in (30, 27, 31, 11, 32))
    _U511 = np.uint64(511)

    @cuda.jit(device=True, inline=True)
    def _add(a, b):
        return libdevice.dadd_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _sub(a, b):
        return libdevice.dadd_rn(a, -b)  # libdevice has no dsub_rn; negation is exact

    @cuda.jit(device=True, inline=True)
    def _mul(a, b):
        return libdevice.dmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _div(a, b):
        return libdevice.ddiv_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fadd(a, b):
        return libdevice.fadd_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fsub(a, b):
        return libdevice.fsub_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fmul(a, b):
        return libdevice.fmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _splitmix64(key, i):
        z = np.uint64(key) + (np.uint64(i) + _U1) * _U_GOLDEN
        z = (z ^ (z >> _S30)) * _U_MIX1
        z = (z ^ (z >> _S27)) * _U_MIX2
        return z ^ (z >> _S31)

    @cuda.jit(device=True, inline=True)
    def _uniform_at(key, i):
        return libdevice.dmul_rn(np.float64(_splitmix64(key, i) >> _S11), _INV_2_53)

    @cuda.jit(device=True, inline=True)
    def _mask_at(key, i):
        return np.int64((((_splitmix64(key, i) >> _S32) * _U511) >> _S32) + _U1)


#: ``a + b``, ``a - b``, ``a * b``, ``a / b`` in float64, each rounded to nearest on its own (never
#: fused); value ``i`` of SplitMix64 stream ``key``, as a uniform in [0, 1), as a 3x3 patch mask
#: in 1..511 (:mod:`fractalshards.seeds`, FractalDB's ``_mask_at``).
add, sub, mul, div = _add, _sub, _mul, _div
#: ``a + b``, ``a - b``, ``a * b`` in float32, likewise (the Perlin noise's arithmetic).
fadd, fsub, fmul = _fadd, _fsub, _fmul
splitmix64, uniform_at, mask_at = _splitmix64, _uniform_at, _mask_at


@cuda.jit(device=True)
def pixel(v, shift, rng, span, pad):
    """``uint16((v - shift) / rng * span + pad)`` as the CPU computes it; 0 for what is not in range
    (NaN and infinities included), as :func:`fractalshards.families.fractaldb.kernels.pixel`."""
    p = _add(_mul(_div(_sub(v, shift), rng), span), pad)
    if p >= 0.0 and p < 65536.0:
        return int(p)
    return 0
