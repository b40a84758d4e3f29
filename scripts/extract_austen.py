#!/usr/bin/env python3
"""Extracts Jane Austen's six novels from Debian's r-cran-janeaustenr into assets/austen/.

The package (MIT; the novels are public domain, from Project Gutenberg) stores each novel as an
R character vector, one element per printed line, in R's lazy-load database (data/Rdata.rdx +
Rdata.rdb, R serialisation format version 3, XDR). This script reads that format itself, so
neither R nor the package is needed afterwards; it is run once, by hand:

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb /tmp/ja
    python3 scripts/extract_austen.py /tmp/ja/usr/lib/R/site-library/janeaustenr/data/Rdata

and writes assets/austen/<novel>.txt.gz (one line per printed line, as the package has them).
"""
import gzip
import os
import struct
import sys
import zlib

NIL, SYM, LIST, CLO, ENV, PROM, LANG = 254, 1, 2, 3, 4, 5, 6
CHAR, LGL, INT, REAL, STR, VEC = 9, 10, 13, 14, 16, 19
REF, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE = 255, 253, 242, 241, 251, 247


class Reader:
    def __init__(self, data):
        self.d, self.i, self.refs = data, 0, []

    def int(self):
        (v,) = struct.unpack(">i", self.d[self.i:self.i + 4])
        self.i += 4
        return v

    def bytes(self, n):
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def header(self):
        assert self.bytes(2) == b"X\n", "not an XDR serialisation"
        version = self.int()
        self.int(), self.int()
        if version == 3:
            self.bytes(self.int())  # native encoding name

    def item(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t in (NIL, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE):
            return None
        if t == REF:
            return self.refs[(flags >> 8) - 1]
        if t == SYM:
            name = self.item()
            self.refs.append(name)
            return ("sym", name)
        if t in (LIST, LANG, CLO, PROM):
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return ("pair", tag, car, cdr, attr)
        if t == CHAR:
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8", "replace")
        if t in (LGL, INT):
            n = self.int()
            v = list(struct.unpack(">%di" % n, self.bytes(4 * n)))
        elif t == REAL:
            n = self.int()
            v = list(struct.unpack(">%dd" % n, self.bytes(8 * n)))
        elif t in (STR, VEC):
            n = self.int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError("unsupported R type %d at byte %d" % (t, self.i))
        if has_attr:
            names = pairlist(self.item()).get("names")
            if names is not None:  # a named list: keep the names (the index is one)
                return dict(zip(names, v))
        return v


def unserialize(data):
    r = Reader(data)
    r.header()
    return r.item()


def pairlist(p):
    out = {}
    while p and p[0] == "pair":
        _, tag, car, cdr, _ = p
        out[tag[1]] = car
        p = cdr
    return out


def main(base):
    # The index is list(variables = c(name = c(offset, length)), references, compressed).
    index = unserialize(gzip.decompress(open(base + ".rdx", "rb").read()))
    variables = index["variables"] if isinstance(index, dict) else index[0]
    rdb = open(base + ".rdb", "rb").read()
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "austen")
    os.makedirs(out_dir, exist_ok=True)
    for name, (offset, length) in sorted(variables.items()):
        blob = rdb[offset:offset + length]
        data = zlib.decompress(blob[4:])  # 4-byte big-endian uncompressed length, then zlib
        lines = unserialize(data)
        if not (isinstance(lines, list) and all(isinstance(s, str) for s in lines)):
            continue  # not a novel (austen_books() is built from the vectors at run time)
        text = "\n".join(lines) + "\n"
        path = os.path.join(out_dir, name + ".txt.gz")
        with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
            f.write(text.encode("utf-8"))
        print("%-18s %6d lines %8d bytes -> %s" % (name, len(lines), len(text), os.path.relpath(path)))


if __name__ == "__main__":
    main(sys.argv[1])
