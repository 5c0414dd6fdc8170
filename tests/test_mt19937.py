"""The official generators' streams in compiled code, call for call against CPython and numpy."""

from __future__ import annotations

import random

import numpy as np

from fractalshards import mt19937 as P


def test_python_random_replayed_in_compiled_code():
    for s in (1, 2, 20, 12345, 2**31 + 5):
        r, st = random.Random(s), P.new_state(s)
        for i in range(4000):
            op = i % 6
            if op == 0:
                a, b = r.random(), P.random(st)
            elif op == 1:
                a, b = r.randint(0, 256), P.randint(st, 0, 256)
            elif op == 2:
                a, b = r.uniform(0, 10000), P.uniform(st, 0.0, 10000.0)
            elif op == 3:
                a, b = r.expovariate(1 / 100), P.expovariate(st, 1 / 100)
            elif op == 4:
                a, b = r.randint(-512, 512), P.randint(st, -512, 512)
            else:
                n = 1 + (i * 7919) % 1500
                for _ in range(n):
                    r.random()
                P.skip_randoms(st, n)
                a, b = r.getrandbits(13), P.getrandbits(st, 13)
            assert a == b, (s, i, op)


def test_block_draws_equal_numpys_legacy_stream_and_pythons():
    state, rs = P.numpy_state(2), np.random.RandomState(2)
    for n in (1, 311, 312, 313, 700, 1249):  # across block boundaries, odd counts included
        out = np.empty(n)
        P.fill_random(state, out)
        assert np.array_equal(out, rs.random_sample(n))
    P.skip_randoms(state, 5000)
    rs.random_sample(5000)
    out = np.empty(10)
    P.fill_random(state, out)
    assert np.array_equal(out, rs.random_sample(10))
    py = P.new_state(5)
    other = py.copy()
    out = np.empty(900)
    P.fill_random(py, out)
    assert out.tolist() == [P.random(other) for _ in range(900)]


def test_numpys_legacy_randint_and_uniform_call_for_call():
    for seed in (0, 1, 7, 2**31 - 1):
        rs, st = np.random.RandomState(seed), P.numpy_state(seed)
        for i in range(3000):
            op = i % 5
            if op == 0:
                a, b = int(rs.randint(2, 8)), P.np_randint(st, 2, 8)
            elif op == 1:
                lo, hi = -(i % 37), 1 + (i * 7919) % 100_003
                a, b = int(rs.randint(lo, hi)), P.np_randint(st, lo, hi)
            elif op == 2:
                a, b = int(rs.randint(5, 6)), P.np_randint(st, 5, 6)  # one value: no draw
            elif op == 3:
                a = rs.uniform(-1, 1, 12).tolist()
                b = [P.np_uniform(st, -1.0, 1.0) for _ in range(12)]
            else:
                a, b = float(rs.random_sample()), P.random(st)
            assert a == b, (seed, i, op)
        assert np.array_equal(rs.get_state(legacy=True)[1], st[:624])
