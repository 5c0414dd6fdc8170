"""One strict PNG parser before every decoder: a second IHDR, a missing palette, an extra chunk or bytes
after IEND are refused by every reading path; whatever it accepts decodes to the plan's shape."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from helpers import forge_shard
from hypothesis import given
from hypothesis import strategies as st

from fractalshards import png
from fractalshards.errors import ShardIntegrityError
from fractalshards.preview import preview_from_dataset
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify

IMAGE = ((np.arange(40 * 40).reshape(40, 40) % 7) == 0).astype(np.uint8) * 127


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _split(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _join(chunks) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(k, b) for k, b in chunks)


GOOD = png.encode(png.two_level(IMAGE))
HUGE_IHDR = struct.pack(">IIBBBBB", 12_000, 12_000, 1, 3, 0, 0, 0)


def _second_ihdr(chunks):
    return [chunks[0], (b"IHDR", HUGE_IHDR), *chunks[1:]]


CRAFTED = {
    "a second IHDR": _second_ihdr,
    "no PLTE in a palette image": lambda cs: [c for c in cs if c[0] != b"PLTE"],
    "an ancillary chunk": lambda cs: [cs[0], (b"tRNS", b"\x00"), *cs[1:]],
    "a PLTE after IDAT": lambda cs: [cs[0], *[c for c in cs[1:] if c[0] != b"PLTE"][:-1], cs[1], cs[-1]],
    "IDAT not first after IHDR's palette": lambda cs: [cs[1], cs[0], *cs[2:]],
    "no IEND": lambda cs: cs[:-1],
}


@pytest.mark.parametrize("what", sorted(CRAFTED))
def test_crafted_pngs_are_refused_by_the_parser(what):
    data = _join(CRAFTED[what](_split(GOOD)))
    with pytest.raises(ValueError):
        png.parse(data)
    with pytest.raises(ValueError):
        png.decode(data)
    with pytest.raises(ValueError):
        png.decode_packed(data, png.PackedLayout("bits", 40, 40, 127))
    assert png.read_header(data) is None


def test_bytes_after_iend_are_refused():
    with pytest.raises(ValueError, match="data after IEND"):
        png.parse(GOOD + b"\0")


@pytest.mark.parametrize("decode", ["tensor", "packed", "numpy"])
def test_a_member_with_a_second_ihdr_is_refused_by_every_reader(built_dataset, tmp_path, decode):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(built_dataset, copy)

    def mutate(members):
        return [(n, _join(_second_ihdr(_split(b))) if n.endswith(".png") else b) for n, b in members]

    forge_shard(copy, "shard-000000.tar", mutate)
    with pytest.raises(ShardIntegrityError, match=r"shard-000000\.tar: sample .* not a sound PNG \(a second IHDR\)"):
        list(FractalStream(str(copy), shuffle=False, decode=decode))
    report = verify(str(copy))
    assert not report.ok and any("a second IHDR" in p for p in report.problems)
    with pytest.raises(ShardIntegrityError, match="a second IHDR"):
        preview_from_dataset(str(copy), 2, 2)


def _mutations():
    chunk = st.tuples(st.sampled_from([b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tEXt", b"tRNS"]), st.binary(max_size=40))
    return st.lists(
        st.one_of(
            st.tuples(st.just("dup"), st.integers(0, 10)),
            st.tuples(st.just("drop"), st.integers(0, 10)),
            st.tuples(st.just("swap"), st.integers(0, 10)),
            st.tuples(st.just("insert"), st.integers(0, 10), chunk),
            st.tuples(st.just("flip"), st.integers(0, 10), st.integers(0, 63), st.integers(1, 255)),
        ),
        max_size=4,
    )


@given(mutations=_mutations(), cut=st.integers(0, 400))
def test_structurally_mutated_pngs_are_refused_or_decode_to_their_header(mutations, cut):
    chunks = _split(GOOD)
    for m in mutations:
        i = m[1] % len(chunks) if chunks else 0
        if m[0] == "dup" and chunks:
            chunks.insert(i, chunks[i])
        elif m[0] == "drop" and chunks:
            chunks.pop(i)
        elif m[0] == "swap" and len(chunks) > 1:
            chunks[i], chunks[i - 1] = chunks[i - 1], chunks[i]
        elif m[0] == "insert":
            chunks.insert(i, m[2])
        elif m[0] == "flip" and chunks:
            kind, body = chunks[i]
            if body:
                body = bytearray(body)
                body[m[2] % len(body)] ^= m[3]
                chunks[i] = (kind, bytes(body))
    data = _join(chunks)
    data = data[: len(data) - cut] if cut < len(data) else data
    layout = png.PackedLayout("bits", 40, 40, 127)
    try:
        info = png.parse(data)
    except ValueError:
        return
    # Readers decode to the plan's shape (40 x 40 here): a header of another size is refused before decoding.
    for decoder in (lambda: png.decode(data, (40, 40)), lambda: png.decode_packed(data, layout)):
        try:
            out = decoder()
        except ValueError:  # the one error both decoders raise for damaged data
            continue
        assert out.dtype == np.uint8 and out.shape in ((40, 40), layout.shape) and info.width == 40
