"""RSE comms embed messages: bit layout, byte layout, and rejection of malformed messages."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from parsec_service.rse_link import comms
from parsec_service.rse_link.client import RseClient, RseUnavailable
from parsec_service.rse_link.comms import Call, Header, MessageError, Reply


def test_ctrl_param_puts_type_and_lengths_in_their_bits() -> None:
    assert comms.make_ctrl_param(0, in_len=3, out_len=1) == 0x0301_0000
    assert comms.make_ctrl_param(0x1234, in_len=1, out_len=0) == 0x0100_1234
    assert comms.split_ctrl_param(0x0302_0000) == (0, 3, 2)


def test_ctrl_param_type_is_signed_16_bit() -> None:
    ctrl = comms.make_ctrl_param(-1, 1, 0)
    assert ctrl & 0xFFFF == 0xFFFF
    assert comms.split_ctrl_param(ctrl) == (-1, 1, 0)


def test_call_encodes_to_the_documented_bytes() -> None:
    call = Call(Header(0, 7, 0x0102), 0x40000100, 0, (b"\xaa" * 2, b"\xbb"), (4,))
    encoded = comms.encode_call(call)
    expected = (
        bytes([0, 7, 0x02, 0x01])  # protocol_ver, seq_num, client_id LE
        + bytes.fromhex("00010040")  # handle 0x40000100 LE
        + bytes.fromhex("00000102")  # ctrl_param: type 0, out_len 1 (bit 16), in_len 2 (bit 24)
        + struct.pack("<4H", 2, 1, 4, 0)  # in sizes, then out sizes
        + b"\xaa\xaa\xbb"
    )
    assert encoded == expected
    assert comms.decode_call(encoded) == call


def test_reply_round_trip_and_layout() -> None:
    reply = Reply(Header(0, 9, 5), -149, (b"\x01\x02\x03\x04",))
    encoded = comms.encode_reply(reply)
    assert encoded[:4] == bytes([0, 9, 5, 0])
    assert struct.unpack_from("<i4H", encoded, 4) == (-149, 4, 0, 0, 0)
    assert encoded[16:] == b"\x01\x02\x03\x04"
    assert comms.decode_reply(encoded, out_len=1) == reply


def test_frame_prefixes_a_little_endian_length() -> None:
    assert comms.frame(b"abc") == b"\x03\x00\x00\x00abc"


def _call_bytes(in_sizes: list[int], payload: bytes, in_len: int, out_len: int = 0) -> bytes:
    sizes = [*in_sizes, 0, 0, 0, 0][:4]
    return (
        Header(0, 1, 0).encode()
        + struct.pack("<iI4H", 0x40000100, comms.make_ctrl_param(0, in_len, out_len), *sizes)
        + payload
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "no complete header"),
        (b"\x00\x01", "no complete header"),
        (Header().encode() + b"\x00" * 15, "truncated call"),
        (_call_bytes([4], b"abc", in_len=1), "add up to 4, payload has 3"),
        (_call_bytes([2], b"abcd", in_len=1), "add up to 2, payload has 4"),
        (_call_bytes([1, 1, 1], b"abc", in_len=3, out_len=2), "exceeds 4"),
        (bytes([1, 0, 0, 0]) + b"\x00" * 16, "not the embed protocol"),
    ],
)
def test_malformed_calls_are_rejected_with_a_reason(message: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        comms.decode_call(message)


def test_payload_over_the_limit_is_rejected() -> None:
    payload = b"x" * 101
    with pytest.raises(MessageError, match="exceeds the limit 100"):
        comms.decode_call(_call_bytes([101], payload, in_len=1), max_payload=100)


def test_reply_with_inconsistent_sizes_is_rejected() -> None:
    encoded = comms.encode_reply(Reply(Header(), 0, (b"abcd",)))
    with pytest.raises(MessageError):
        comms.decode_reply(encoded[:-1], out_len=1)
    with pytest.raises(MessageError, match="truncated reply"):
        comms.decode_reply(encoded[:10], out_len=1)


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(MessageError):
        comms.encode_call(Call(Header(), 1, 0, (b"a", b"b", b"c"), (1, 2)))
    with pytest.raises(MessageError):
        comms.encode_call(Call(Header(), 1, 0, (b"a" * 0x10000,), ()))


class ChunkedStream:
    """A stream that hands out its bytes in the given chunks and counts the reads."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    def recv(self, size: int, /) -> bytes:
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        assert len(chunk) <= size, "the reader asked for less than a chunk"
        return chunk


def test_frame_reader_reads_a_frame_in_one_recv_and_keeps_what_follows() -> None:
    stream = ChunkedStream(comms.frame(b"first") + comms.frame(b"second")[:6], b"cond")
    frames = comms.FrameReader(stream)
    assert frames.read_length() == 5
    assert frames.read_exact(5) == b"first"
    assert stream.reads == 1, "prefix and body came in one chunk: one recv"
    assert frames.read_length() == 6
    assert frames.read_exact(6) == b"second", "a frame split across chunks is joined"
    assert frames.read_length() is None, "a clean end of stream between frames"


@pytest.mark.parametrize(
    "chunks",
    [(b"\x05\x00",), (comms.frame(b"12345")[:-1],)],
    ids=["inside the prefix", "inside the body"],
)
def test_frame_reader_reports_an_end_of_stream_mid_frame(chunks: tuple[bytes, ...]) -> None:
    frames = comms.FrameReader(ChunkedStream(*chunks))
    with pytest.raises(ConnectionError):
        length = frames.read_length()
        frames.read_exact(length or 0)


def test_frame_reader_discards_an_oversized_frame_chunk_by_chunk() -> None:
    size = 3 * comms.FrameReader.CHUNK + 10
    body = bytes(size)
    data = comms.frame(body) + comms.frame(b"next")
    chunk = comms.FrameReader.CHUNK
    frames = comms.FrameReader(
        ChunkedStream(*(data[i : i + chunk] for i in range(0, len(data), chunk)))
    )
    assert frames.read_length() == size
    assert frames.read_exact(comms.HEADER.size) == bytes(comms.HEADER.size)
    frames.discard(size - comms.HEADER.size)
    assert len(frames._buffer) <= chunk, "never more than one chunk held"
    assert frames.read_length() == 4 and frames.read_exact(4) == b"next"
    truncated = comms.FrameReader(ChunkedStream(bytes(10)))
    with pytest.raises(ConnectionError):
        truncated.discard(11)


def test_a_silent_rse_fails_the_call_within_the_link_timeout(tmp_path: Path) -> None:
    """The link's timeout is the kernel's (SO_RCVTIMEO): a call to an RSE that takes the message
    and never answers fails with COMMUNICATION_FAILURE after about that long, and the next call
    reaches an RSE that answers on a fresh link."""
    path = tmp_path / "rse.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    accepted: list[socket.socket] = []

    def serve() -> None:
        silent, _ = listener.accept()  # reads nothing, answers nothing
        accepted.append(silent)
        answering, _ = listener.accept()
        accepted.append(answering)
        frames = comms.FrameReader(answering)
        length = frames.read_length()
        call = comms.decode_call(frames.read_exact(length or 0))
        reply = Reply(call.header, 0, (b"\x07" * call.out_sizes[0],))
        answering.sendall(comms.frame(comms.encode_reply(reply)))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with RseClient(path, client_id=1, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(RseUnavailable, match=r"no reply within 0\.3 s"):
                client.generate_random(4)
            assert 0.25 <= time.monotonic() - started < 10, "it waited for the timeout, not forever"
            assert client.generate_random(4) == b"\x07" * 4
        server.join(timeout=5)
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
