"""Differential fuzzing of the shard reader against tarfile: on every archive they agree, or the reader refuses.

A few thousand random and mutated archives: plain USTAR members written by our writer and by
tarfile (USTAR, GNU and pax formats, long names, extended headers that set a size or a path),
truncations, and byte flips in headers, some with the checksum recomputed as a forger would.
"""

from __future__ import annotations

import io
import random
import re
import tarfile

import pytest
import webdataset as wds

from fractalshards.errors import ShardIntegrityError
from fractalshards.tarformat import SAFE_EXTENSIONS, index_tar, tar_bytes

_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _tarfile_view(data: bytes):
    """What tarfile (in webdataset's streaming mode) reads: (key, ext, bytes) of sample members, or None."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                payload = tar.extractfile(info).read()
                match = _KEY.match(info.name)
                if match and match.group(2).lower() in SAFE_EXTENSIONS:
                    out.append((match.group(1), match.group(2).lower(), payload))
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError):
        return None
    return out


def _ours(data: bytes):
    try:
        samples = index_tar(data, "fuzz.tar")
    except ShardIntegrityError:
        return None
    return [(s.key, ext, bytes(data[o : o + n])) for s in samples for ext, (o, n) in s.members.items()]


def _members(rng: random.Random) -> list[tuple[str, bytes]]:
    members = []
    for k in range(rng.randint(0, 5)):
        key = f"{rng.randint(0, 999999):06d}-{k:04d}"
        for ext in rng.sample(["cls", "json", "png", "txt"], rng.randint(1, 3)):
            members.append((f"{key}.{ext}", rng.randbytes(rng.choice([0, 1, 7, 511, 512, 513, 1500]))))
    return members


def _tarfile_archive(rng: random.Random, members, fmt) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, payload in members:
            if rng.random() < 0.2:
                name = "d" * rng.randint(90, 160) + "/" + name  # long: GNU long names, pax paths, or a prefix
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            if fmt == tarfile.PAX_FORMAT and rng.random() < 0.3:
                info.pax_headers = {"size": str(len(payload) + rng.choice([-1, 0, 5])), "comment": "x"}
            if rng.random() < 0.05:
                info.type = rng.choice([tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
                info.linkname = "target"
                info.size = 0
            try:
                tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
            except ValueError:  # a name USTAR cannot hold
                pass
    return buf.getvalue()


def _reseal(block: bytearray) -> None:
    # A forger recomputes the checksum of a header they changed.
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % sum(block)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    choice = rng.random()
    if choice < 0.25 and data:
        return bytes(data[: rng.randrange(len(data))])  # truncation
    headers = [i for i in range(0, len(data) - 511, 512) if data[i + 257 : i + 262] == b"ustar"]
    if not headers:
        return bytes(data)
    at = rng.choice(headers)
    block = bytearray(data[at : at + 512])
    field = rng.choice([(0, 100), (124, 136), (156, 157), (257, 265), (345, 500), (100, 108)])
    if rng.random() < 0.5:
        block[rng.randrange(*field)] = rng.randrange(256)
    else:
        values = [
            b"-1",
            b"-0000001",
            b"7777777777\0",
            b"\x80\0\0\0\0\0\0\0\0\0\0\x10",
            b"x",
            b"L",
            b"K",
            b"g",
            b"5",
            b"../../etc/passwd\0",
            b"/abs.png\0",
            b"a\xff.png\0",
            b"ustar  \0",
            b"00000000001 ",
        ]
        value = rng.choice(values)
        block[field[0] : field[0] + len(value)] = value[: field[1] - field[0]]
    if rng.random() < 0.7:
        _reseal(block)
    data[at : at + 512] = block
    return bytes(data)


def test_the_reader_agrees_with_tarfile_or_refuses():
    rng = random.Random(20261201)
    counts = {"agree": 0, "refused": 0}
    formats = [None, tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]
    for case in range(3000):
        members = _members(rng)
        fmt = formats[case % 4]
        base = tar_bytes(members) if fmt is None else _tarfile_archive(rng, members, fmt)
        data = _mutate(rng, base) if case % 3 else base
        ours = _ours(data)
        if ours is None:
            counts["refused"] += 1
            continue
        assert ours == _tarfile_view(data), f"case {case}: the reader and tarfile disagree"
        counts["agree"] += 1
    # Both outcomes are exercised, so the comparison is not vacuous.
    assert counts["agree"] > 1000 and counts["refused"] > 500, counts


@pytest.mark.parametrize("field,value", [("size", b"-0000001\0"), ("size", b"\x80" + b"\0" * 10 + b"\x01")])
def test_a_negative_or_binary_size_is_refused_in_bounded_time(field, value):
    data = bytearray(tar_bytes([("000001-0000.cls", b"1"), ("000001-0000.png", b"x" * 600)]))
    data[124 : 124 + len(value)] = value
    block = bytearray(data[:512])
    _reseal(block)
    data[:512] = block
    with pytest.raises(ShardIntegrityError, match="not an octal number"):
        index_tar(bytes(data), "s.tar")


def test_a_pax_size_record_is_refused_where_tarfile_would_read_other_samples():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("000001-0000.cls")
        info.size = 1
        info.pax_headers = {"size": "0"}
        tar.addfile(info, io.BytesIO(b"1"))
    with pytest.raises(ShardIntegrityError, match="extended header"):
        index_tar(buf.getvalue(), "s.tar")


def test_webdataset_reads_the_same_members_from_our_shards():
    rng = random.Random(7)
    members = _members(rng) + [("000009-0001.cls", b"9"), ("000009-0001.png", b"p" * 700)]
    data = tar_bytes(members)
    ours = {(key, ext): payload for key, ext, payload in _ours(data)}
    seen = {}
    for member in wds.tariterators.tar_file_iterator(io.BytesIO(data)):  # webdataset's own tar stage
        key, _, ext = member["fname"].partition(".")
        if ext in SAFE_EXTENSIONS:
            seen[(key, ext)] = member["data"]
    assert seen == ours and len(ours) >= 2
