"""A zlib stream (RFC 1950/1951) written by compiled code alone: the ``portable`` PNG encoder's.

One method, chosen for rendered images (long runs of one value, little else that repeats nearby):
run-length matches only (distance 1, as zlib's ``Z_RLE``), taken greedily, in blocks of
:data:`BLOCK_TOKENS` symbols, each with dynamic Huffman codes built from its own symbol counts
(lengths limited to 15 bits, and 7 for the code-length code, by halving the counts until they fit). Nothing depends on a
library's version, so the bytes are the same on every machine; any inflater reads them.

Plain arrays in and out; tested by inflating with zlib (random, constant and run-heavy inputs,
every match length) and by decoding PNGs with Pillow.
"""

from __future__ import annotations

import zlib

import numpy as np

from .jit import kernel

__all__ = ["BLOCK_TOKENS", "compress"]

# Length symbols 257..285: the least length of each and its extra bits (RFC 1951, 3.2.5).
_LEN_BASE = np.array(
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258],
    np.int64,
)
_LEN_EXTRA = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0], np.int64)
# The order the code-length code's lengths are sent in.
_CL_ORDER = np.array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15], np.int64)


def _length_table() -> tuple[np.ndarray, np.ndarray]:
    sym = np.zeros(259, np.int64)
    for k in range(len(_LEN_BASE) - 1, -1, -1):
        sym[_LEN_BASE[k] : 259 if k == len(_LEN_BASE) - 1 else _LEN_BASE[k + 1]] = k
    sym[258] = 28  # 258 has a code of its own (285), not 284 with extra bits 31
    return sym, _LEN_BASE[sym]


_LEN_SYM, _ = _length_table()
# A token's literal/length symbol: a literal is its own, a match 256 + L the length code of L.
_SYM_OF = np.concatenate([np.arange(256), np.zeros(3, np.int64), 257 + _LEN_SYM[3:]]).astype(np.int64)


@kernel
def _tokens(data, tokens):
    # Literals (0..255) and run-length matches (256 + length, distance 1), greedy as Z_RLE takes
    # them. Returns the token count.
    n = data.shape[0]
    count = 0
    i = 0
    while i < n:
        v = data[i]
        if 0 < i and i + 2 < n and v == data[i - 1] and data[i + 1] == v and data[i + 2] == v:
            run = 3
            while run < 258 and i + run < n and data[i + run] == v:
                run += 1
            tokens[count] = 256 + run
            i += run
        else:
            tokens[count] = v
            i += 1
        count += 1
    return count


@kernel(inline="always")
def _lightest(weight, leaf, leaves, node, made):
    # The lighter of the next leaf and the next made node, and both queues' positions after it.
    if leaf < leaves and (node >= made or weight[leaf] <= weight[node]):
        return leaf, leaf + 1, node
    return node, leaf, node + 1


@kernel
def _huffman_lengths(freq, limit, lengths):
    # Code lengths of a Huffman code for ``freq`` (symbols of count 0 get none), at most ``limit``
    # bits: built from the counts, halved (never below 1) until the longest fits. At least two
    # symbols get a code (inflaters refuse an incomplete code).
    n = freq.shape[0]
    f = freq.copy()
    used = 0
    for k in range(n):
        if f[k] > 0:
            used += 1
    if used < 2:  # a second symbol, so that the code is complete
        for k in range(n):
            if f[k] == 0:
                f[k] = 1
                used += 1
                if used == 2:
                    break
    while True:
        lengths[:] = 0
        keys = np.empty(used, np.int64)
        u = 0
        for k in range(n):
            if f[k] > 0:
                keys[u] = f[k] * 1024 + k  # ties broken by symbol: one order on every machine
                u += 1
        keys.sort()
        weight = np.empty(2 * used, np.int64)
        parent = np.zeros(2 * used, np.int64)
        for k in range(used):
            weight[k] = keys[k] // 1024
        leaf, node, made = 0, used, used
        for _ in range(used - 1):
            # The two lightest of the next leaf and the next made node (a leaf first on a tie).
            a, leaf, node = _lightest(weight, leaf, used, node, made)
            b, leaf, node = _lightest(weight, leaf, used, node, made)
            weight[made] = weight[a] + weight[b]
            parent[a] = made
            parent[b] = made
            made += 1
        depth = np.zeros(made, np.int64)
        longest = 0
        for k in range(made - 2, -1, -1):
            depth[k] = depth[parent[k]] + 1
        for k in range(used):
            sym = keys[k] % 1024
            lengths[sym] = depth[k]
            longest = max(longest, depth[k])
        if longest <= limit:
            return
        for k in range(n):
            if f[k] > 0:
                f[k] = max(1, f[k] >> 1)


@kernel
def _codes(lengths, codes):
    # Canonical codes (RFC 1951, 3.2.2), bit-reversed: deflate sends a code's first bit first.
    count = np.zeros(16, np.int64)
    for k in range(lengths.shape[0]):
        count[lengths[k]] += 1
    count[0] = 0
    nxt = np.zeros(16, np.int64)
    code = 0
    for bits in range(1, 16):
        code = (code + count[bits - 1]) << 1
        nxt[bits] = code
    for k in range(lengths.shape[0]):
        b = lengths[k]
        if b:
            c = nxt[b]
            nxt[b] += 1
            r = 0
            for _ in range(b):
                r = (r << 1) | (c & 1)
                c >>= 1
            codes[k] = r


@kernel
def _put(out, state, value, bits):
    # Append ``bits`` bits of ``value`` (least significant first); state = [accumulator, bit count, bytes out].
    acc = state[0] | (value << state[1])
    nbits = state[1] + bits
    pos = state[2]
    while nbits >= 8:
        out[pos] = acc & 255
        pos += 1
        acc >>= 8
        nbits -= 8
    state[0] = acc
    state[1] = nbits
    state[2] = pos


@kernel
def _block(tokens, first, last, final, out, state, sym_of, len_sym, len_base, len_extra, cl_order):
    # Tokens ``first:last`` as one block with dynamic codes built from their counts.
    # Four tables of counts, so that runs of one symbol do not wait on their own increments.
    four = np.zeros((4, 286), np.int64)
    t = first
    while t + 4 <= last:
        four[0, sym_of[tokens[t]]] += 1
        four[1, sym_of[tokens[t + 1]]] += 1
        four[2, sym_of[tokens[t + 2]]] += 1
        four[3, sym_of[tokens[t + 3]]] += 1
        t += 4
    for r in range(t, last):
        four[0, sym_of[tokens[r]]] += 1
    lit_freq = four[0] + four[1] + four[2] + four[3]
    lit_freq[256] = 1  # end of block
    lit_len = np.zeros(286, np.int64)
    _huffman_lengths(lit_freq, 15, lit_len)
    lit_code = np.zeros(286, np.int64)
    _codes(lit_len, lit_code)
    hlit = 286
    while hlit > 257 and lit_len[hlit - 1] == 0:
        hlit -= 1
    # One distance code (distance 1), sent in one bit: the single-code case the format allows.
    lengths = np.zeros(hlit + 1, np.int64)
    lengths[:hlit] = lit_len[:hlit]
    lengths[hlit] = 1
    # The lengths as code-length symbols: runs of zeros as 17/18, runs of a length as 16.
    cl_syms = np.empty(lengths.shape[0], np.int64)
    cl_extra = np.empty(lengths.shape[0], np.int64)
    m = 0
    i = 0
    while i < lengths.shape[0]:
        v = lengths[i]
        run = 1
        while i + run < lengths.shape[0] and lengths[i + run] == v:
            run += 1
        if v == 0 and run >= 11:
            take = min(run, 138)
            cl_syms[m], cl_extra[m] = 18, take - 11
        elif v == 0 and run >= 3:
            take = run
            cl_syms[m], cl_extra[m] = 17, take - 3
        elif v != 0 and run >= 4:
            cl_syms[m], cl_extra[m] = v, 0  # the length once, then repeats of it
            m += 1
            take = 1 + min(run - 1, 6)
            cl_syms[m], cl_extra[m] = 16, take - 1 - 3
        else:
            take = 1
            cl_syms[m], cl_extra[m] = v, 0
        m += 1
        i += take
    cl_freq = np.zeros(19, np.int64)
    for k in range(m):
        cl_freq[cl_syms[k]] += 1
    cl_len = np.zeros(19, np.int64)
    _huffman_lengths(cl_freq, 7, cl_len)
    cl_code = np.zeros(19, np.int64)
    _codes(cl_len, cl_code)
    hclen = 19
    while hclen > 4 and cl_len[cl_order[hclen - 1]] == 0:
        hclen -= 1
    _put(out, state, np.int64(1 if final else 0), 1)
    _put(out, state, np.int64(2), 2)  # dynamic codes
    _put(out, state, np.int64(hlit - 257), 5)
    _put(out, state, np.int64(0), 5)  # one distance code
    _put(out, state, np.int64(hclen - 4), 4)
    for k in range(hclen):
        _put(out, state, np.int64(cl_len[cl_order[k]]), 3)
    for k in range(m):
        s = cl_syms[k]
        _put(out, state, np.int64(cl_code[s]), cl_len[s])
        if s == 16:
            _put(out, state, np.int64(cl_extra[k]), 2)
        elif s == 17:
            _put(out, state, np.int64(cl_extra[k]), 3)
        elif s == 18:
            _put(out, state, np.int64(cl_extra[k]), 7)
    # Each token's bits and bit count from one table (a match: its length code, extra bits and the
    # distance code's one 0 bit); whole bytes written every token, with no branch on the count.
    bits = np.empty(515, np.int64)
    nb = np.empty(515, np.int64)
    for v in range(256):
        bits[v] = lit_code[v]
        nb[v] = lit_len[v]
    for length in range(3, 259):
        k = len_sym[length]
        bits[256 + length] = lit_code[257 + k] | ((length - len_base[k]) << lit_len[257 + k])
        nb[256 + length] = lit_len[257 + k] + len_extra[k] + 1
    acc = state[0]
    nbits = state[1]
    pos = state[2]
    for t in range(first, last):
        v = tokens[t]
        acc |= bits[v] << nbits
        nbits += nb[v]  # at most 7 + 21 bits held
        out[pos] = acc & 255
        out[pos + 1] = (acc >> 8) & 255
        out[pos + 2] = (acc >> 16) & 255
        out[pos + 3] = (acc >> 24) & 255
        whole = nbits >> 3
        pos += whole
        acc >>= whole << 3
        nbits &= 7
    state[0] = acc
    state[1] = nbits
    state[2] = pos
    _put(out, state, lit_code[256], lit_len[256])


#: Tokens per block: each block's codes fit its part of the image (a mask's classes, a line's greys).
BLOCK_TOKENS = 16384


@kernel
def _deflate(data, out, block, sym_of, len_sym, len_base, len_extra, cl_order):
    # ``data`` as blocks of ``block`` tokens into ``out``; returns the bytes written.
    tokens = np.empty(data.shape[0] + 1, np.uint16)
    count = _tokens(data, tokens)
    state = np.zeros(3, np.int64)
    first = 0
    while True:
        last = min(first + block, count)
        _block(tokens, first, last, last == count, out, state, sym_of, len_sym, len_base, len_extra, cl_order)
        if last == count:
            break
        first = last
    if state[1] > 0:  # the last byte's unused bits are zeros
        out[state[2]] = state[0] & 255
        state[2] += 1
    return state[2]


def compress(data: bytes | np.ndarray) -> bytes:
    """A zlib stream of ``data`` (bytes or a uint8 array): the header, one deflate block, Adler-32."""
    raw = (
        np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.ascontiguousarray(data).ravel()
    )
    if raw.dtype != np.uint8:
        raise ValueError(f"data: {raw.dtype} is not uint8")
    # A literal costs at most 15 bits, a match (3 bytes or more) 21: under 2 bytes a byte, plus
    # each block's header (under 300 bytes) and the 4 bytes the writer stores ahead.
    out = np.empty(2 * raw.shape[0] + 300 * (raw.shape[0] // BLOCK_TOKENS + 2), np.uint8)
    size = _deflate(raw, out, BLOCK_TOKENS, _SYM_OF, _LEN_SYM, _LEN_BASE, _LEN_EXTRA, _CL_ORDER)
    # 0x78 0x01: deflate with a 32 KiB window (distances here are 1), the check bits of RFC 1950.
    return b"\x78\x01" + out[:size].tobytes() + zlib.adler32(raw).to_bytes(4, "big")
