"""RSE comms embed messages: bit layout, byte layout, and rejection of malformed messages."""

from __future__ import annotations

import struct

import pytest

from parsec_service.rse_link import comms
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
