"""cli.multipart: the streaming reader of split-image exports, fed in every chunking."""

from __future__ import annotations

import io
import random

import pytest

from cli.errors import CliError
from cli.multipart import MultipartReader, boundary_of
from cli.transfer import multipart_body

BOUNDARY = "b0undary"


def body(parts: list[tuple[str, str, bytes]], boundary: str = BOUNDARY,
         preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = preamble
    for name, filename, data in parts:
        out += (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'
                ).encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode() + epilogue


def read(data: bytes, sizes: list[int] | None = None, boundary: str = BOUNDARY
         ) -> dict[str, tuple[str, bytes]]:
    files: dict[str, tuple[str, io.BytesIO]] = {}

    def opener(name: str, filename: str) -> io.BytesIO:
        files[name] = (filename, io.BytesIO())
        return files[name][1]

    reader = MultipartReader(boundary, opener)
    pos = 0
    for size in sizes or [len(data)]:
        reader.write(data[pos:pos + size])
        pos += size
    reader.write(data[pos:])
    reader.close()
    assert [p[:2] for p in reader.parts] == [(n, f) for n, (f, _) in files.items()]
    return {name: (filename, out.getvalue()) for name, (filename, out) in files.items()}


# Bodies full of near-delimiters: CRLFs, dashes and boundary prefixes.
META = b"\r\n--b0undar\r\n--\r\n" * 3 + b"meta"
ROOT = b"--b0undary" + bytes(range(256)) * 4 + b"\r\n--b0undarx\r\n"
EXPECTED = {"metadata": ("meta-x.tar.xz", META), "rootfs": ("x.squashfs", ROOT)}
DATA = body([("metadata", "meta-x.tar.xz", META), ("rootfs", "x.squashfs", ROOT)])


def test_whole_body():
    assert read(DATA) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 14, 15, 64])
def test_every_fixed_chunk_size(size):
    assert read(DATA, [size] * (len(DATA) // size)) == EXPECTED


def test_split_at_every_position():
    for cut in range(len(DATA) + 1):
        assert read(DATA, [cut]) == EXPECTED, cut


def test_random_chunkings():
    rng = random.Random(4)
    for _ in range(200):
        sizes, left = [], len(DATA)
        while left > 0:
            sizes.append(rng.randint(1, 40))
            left -= sizes[-1]
        assert read(DATA, sizes) == EXPECTED


def test_preamble_epilogue_and_empty_part():
    data = body([("metadata", "m", b""), ("rootfs", "r", b"x")],
                preamble=b"this is a preamble\r\n", epilogue=b"trailing junk --b0undary")
    assert read(data) == {"metadata": ("m", b""), "rootfs": ("r", b"x")}


def test_reads_what_mc_itself_sends(tmp_path):
    (tmp_path / "meta.tar.xz").write_bytes(META)
    (tmp_path / "rootfs.squashfs").write_bytes(ROOT)
    sent = multipart_body([("metadata", tmp_path / "meta.tar.xz"),
                           ("rootfs", tmp_path / "rootfs.squashfs")])
    data = b"".join(sent.chunks())
    assert read(data, [5] * 400, boundary=boundary_of(sent.content_type)) == {
        "metadata": ("meta.tar.xz", META), "rootfs": ("rootfs.squashfs", ROOT)}


def test_a_large_part_is_streamed_not_buffered():
    seen: list[int] = []

    class Sink(io.RawIOBase):
        def write(self, b):  # type: ignore[override]
            seen.append(len(b))
            return len(b)

    reader = MultipartReader(BOUNDARY, lambda n, f: Sink())  # type: ignore[arg-type,return-value]
    reader.write(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=rootfs\r\n\r\n".encode())
    for _ in range(64):
        reader.write(b"z" * 65536)
        assert len(reader._buf) < 64  # only a delimiter's worth of look-behind is kept
    reader.write(f"\r\n--{BOUNDARY}--".encode())
    reader.close()
    assert sum(seen) == 64 * 65536 and reader.parts == [("rootfs", "", 64 * 65536)]


@pytest.mark.parametrize("data, message", [
    (DATA[:-20], "ended before its last part was complete"),
    (b"", "ended before its last part was complete"),
    (f"--{BOUNDARY}xx\r\n".encode(), "junk after a boundary"),
    (f"--{BOUNDARY}\r\n".encode() + b"X: " + b"y" * 20000, "part headers too long"),
    (body([("p", "f", b"")] * 9), "more than 8 parts"),
])
def test_malformed(data, message):
    reader = MultipartReader(BOUNDARY, lambda n, f: io.BytesIO())
    with pytest.raises(CliError, match=message):
        reader.write(data)
        reader.close()


@pytest.mark.parametrize("content_type", [
    "application/octet-stream", "multipart/form-data", "multipart/mixed; boundary=x",
    "multipart/form-data; boundary=" + "x" * 71,
])
def test_boundary_of_refuses(content_type):
    with pytest.raises(CliError, match="Expected a multipart/form-data response"):
        boundary_of(content_type)


def test_boundary_of():
    assert boundary_of('multipart/form-data; boundary="a b:c"') == "a b:c"
    assert boundary_of("multipart/form-data; boundary=abc123") == "abc123"
