"""The compiled deflate encoder (the ``portable`` PNG encoder's): every stream inflates back, with
zlib, to its input; code lengths stay within the format's limits."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from fractalshards import deflate


def _inputs() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    every_run = b"".join(bytes([k % 251]) * k for k in range(1, 700))  # every match length, runs past 258
    tail = b"xy" + b"z" * 2 + b"q" * 3  # runs of 2 and 3 at the very end
    return {
        "empty": b"",
        "one byte": b"\x07",
        "two bytes": b"ab",
        "constant": b"\x00" * 100_000,
        "random": rng.integers(0, 256, 70_000, dtype=np.uint8).tobytes(),
        "three values": rng.integers(0, 3, 70_000, dtype=np.uint8).tobytes(),
        "every run length": every_run,
        "short runs at the end": tail,
        "many blocks": rng.integers(0, 2, 5 * deflate.BLOCK_TOKENS, dtype=np.uint8).repeat(2).tobytes(),
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_streams_inflate_to_their_input_and_are_deterministic(name):
    data = _inputs()[name]
    out = deflate.compress(data)
    assert zlib.decompress(out) == data
    assert deflate.compress(np.frombuffer(data, np.uint8)) == out  # bytes or an array: one stream
    d = zlib.decompressobj()  # nothing after the Adler-32
    assert d.decompress(out) == data and d.eof and not d.unused_data
    if name == "constant":
        assert len(out) < 1000


def test_skewed_counts_get_codes_within_the_length_limits():
    # Counts growing like powers of two make a Huffman code as deep as there are symbols: the
    # lengths must be cut to 15 bits (and the code-length code's to 7), and stay a complete code.
    freq = np.zeros(286, np.int64)
    freq[:40] = 2 ** np.minimum(np.arange(40), 30)
    for limit in (15, 7):
        lengths = np.zeros(286, np.int64)
        deflate._huffman_lengths(freq, limit, lengths)
        used = lengths[lengths > 0]
        assert used.max() <= limit and len(used) == 40
        assert sum(2.0**-used) == 1.0  # complete: inflaters refuse anything else
    skewed = np.repeat(np.arange(40, dtype=np.uint8), np.minimum(2 ** np.arange(40), 40_000))
    data = np.random.default_rng(1).permutation(skewed).tobytes()
    assert zlib.decompress(deflate.compress(data)) == data


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        deflate.compress(np.zeros(4, np.uint16))
