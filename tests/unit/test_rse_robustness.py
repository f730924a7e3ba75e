"""Whatever arrives on the link, the RSE model answers or closes cleanly, and keeps serving.

Malformed, truncated and oversized messages get an error reply and the session goes on;
hypothesis throws arbitrary bytes and arbitrary crypto calls at the message handler; slow or
broken clients do not stop the others.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsec_rse_model.console import RseLog
from parsec_rse_model.keystore import KeyStore
from parsec_rse_model.server import RseModel
from parsec_service.psa import Status
from parsec_service.rse_link import comms
from parsec_service.rse_link.comms import Header
from parsec_service.rse_link.tfm_crypto import CRYPTO_HANDLE, FunctionId, KeyAttributes, PackIovec
from support.running import RunningRse


def raw_exchange(sock: socket.socket, message: bytes) -> comms.Reply:
    sock.sendall(comms.frame(message))
    return read_reply(sock)


def read_reply(sock: socket.socket, out_len: int = 0) -> comms.Reply:
    frames = comms.FrameReader(sock)  # one reply at a time: nothing is left in its buffer
    length = frames.read_length()
    assert length is not None, "the model closed the link instead of replying"
    return comms.decode_reply(frames.read_exact(length), out_len)


def random_call(seq: int) -> bytes:
    call = comms.Call(
        Header(0, seq, 3),
        CRYPTO_HANDLE,
        0,
        (PackIovec(FunctionId.GENERATE_RANDOM).encode(),),
        (16,),
    )
    return comms.encode_call(call)


def connect(rse: RunningRse) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(rse.socket_path))
    return sock


def test_malformed_messages_get_error_replies_and_the_session_continues(rse: RunningRse) -> None:
    with connect(rse) as sock:
        for bad in [
            b"",
            b"\x00\x05",
            Header(0, 9, 1).encode() + b"\x01\x02",
            b"\x00\x0a\x00\x00" + b"\xff" * 40,
        ]:
            reply = raw_exchange(sock, bad)
            assert reply.return_val == Status.INVALID_ARGUMENT
        assert reply.header.seq_num == 0x0A, "the reply echoes the header it could read"
        pointer_access = raw_exchange(sock, bytes([1, 4, 0, 0]) + b"\0" * 16)
        assert pointer_access.return_val == Status.NOT_SUPPORTED
        assert pointer_access.header.seq_num == 4
        sock.sendall(comms.frame(random_call(77)))
        good = read_reply(sock, out_len=1)
        assert good.return_val == Status.SUCCESS and len(good.out_vecs[0]) == 16
        assert good.header.seq_num == 77
    assert "[RSE-COMMS] Invalid message:" in rse.console()


def test_oversized_frames_are_drained_and_answered(rse: RunningRse) -> None:
    limit = rse.server.model.max_message
    with connect(rse) as sock:
        oversized = Header(0, 5, 0).encode() + b"z" * (limit + 1000)
        reply = raw_exchange(sock, oversized)
        assert reply.return_val == Status.INVALID_ARGUMENT
        assert reply.header.seq_num == 5
        sock.sendall(comms.frame(random_call(6)))
        assert read_reply(sock, 1).return_val == Status.SUCCESS
    assert f"exceeds {limit}" in rse.console()


def test_out_vectors_larger_than_a_reply_are_rejected(rse: RunningRse) -> None:
    with connect(rse) as sock:
        call = comms.Call(
            Header(0, 1, 0),
            CRYPTO_HANDLE,
            0,
            (PackIovec(FunctionId.GENERATE_RANDOM).encode(),),
            (0xFFFF,),
        )
        assert raw_exchange(sock, comms.encode_call(call)).return_val == Status.INVALID_ARGUMENT


def test_a_peer_vanishing_mid_frame_does_not_disturb_others(rse: RunningRse) -> None:
    with connect(rse) as broken:
        broken.sendall(struct.pack("<I", 100) + b"\x00\x01")
    with rse.client() as client:
        assert len(client.generate_random(4)) == 4


def test_a_stalled_client_does_not_block_the_others(rse: RunningRse) -> None:
    with connect(rse) as stalled:
        stalled.sendall(struct.pack("<I", 500) + b"\x00" * 10)  # then nothing more
        errors: list[BaseException] = []

        def worker(client_id: int) -> None:
            try:
                with rse.client(client_id) as client:
                    for _ in range(20):
                        assert len(client.generate_random(8)) == 8
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors
        assert not any(t.is_alive() for t in threads)


@given(st.binary(max_size=300))
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_bytes_get_a_well_formed_reply(tmp_path: Path, data: bytes) -> None:
    model = _model(tmp_path)
    reply = model.handle_message(data)
    decoded = comms.decode_reply(reply, out_len=4)
    if decoded.return_val == Status.SUCCESS:
        # Only a genuine call can succeed, and then it echoes the caller's header.
        assert comms.decode_call(data).header == decoded.header


_MODELS: dict[Path, RseModel] = {}


def _model(tmp_path: Path) -> RseModel:
    if tmp_path not in _MODELS:
        log = RseLog(tmp_path / "fuzz-console.log", None)
        _MODELS[tmp_path] = RseModel(KeyStore(tmp_path / "store", slots=8, warn=log.console), log)
    return _MODELS[tmp_path]


crypto_calls = st.builds(
    lambda fid, key_id, alg, extra, outs, attrs: (
        [
            PackIovec(fid, key_id=key_id, alg=alg).encode(),
            *([attrs.encode()] if fid in (0x0203, 0x0209) and extra else []),
            *extra,
        ][:4],
        outs,
    ),
    st.sampled_from([int(f) for f in FunctionId] + [0x0000, 0x0999]),
    st.sampled_from([0, 1, 42, 0x7FFFFFF8, 0x7FFFFFFF, 0xFFFFFFFF]),
    st.sampled_from([0, 0x06000209, 0x06000609, 0x0600030A, 0x02000009, 0xFFFFFFFF]),
    st.lists(st.binary(max_size=80), max_size=3),
    st.lists(st.integers(0, 600), max_size=2),
    st.builds(
        KeyAttributes,
        st.sampled_from([0x4001, 0x7001, 0x4112, 0x7112, 0x7117, 0, 0xFFFF]),
        st.sampled_from([0, 256, 384, 2048, 0xFFFF]),
        st.sampled_from([0, 1, 0x100, 0xFFFFFFFF]),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
    ),
)


@given(crypto_calls)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_crypto_call_gets_a_psa_status(
    tmp_path: Path, call: tuple[list[bytes], list[int]]
) -> None:
    in_vecs, out_sizes = call
    out_sizes = out_sizes[: 4 - len(in_vecs)]
    message = comms.encode_call(
        comms.Call(Header(0, 1, 2), CRYPTO_HANDLE, 0, tuple(in_vecs), tuple(out_sizes))
    )
    model = _model(tmp_path)
    reply = comms.decode_reply(model.handle_message(message), len(out_sizes))
    assert reply.return_val in {int(s) for s in Status}
    for produced, capacity in zip(reply.out_vecs, out_sizes, strict=False):
        assert len(produced) <= capacity
    console = (tmp_path / "fuzz-console.log").read_text()
    assert "Internal error" not in console


@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_byte_streams_never_take_the_server_down(
    rse_factory: Callable[..., RunningRse], chunks: list[bytes]
) -> None:
    rse = _shared_server(rse_factory)
    with connect(rse) as sock:
        sock.settimeout(0.5)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
    with rse.client() as client:
        assert len(client.generate_random(4)) == 4
    assert "Internal error" not in rse.console()


_SERVERS: dict[int, RunningRse] = {}


def _shared_server(rse_factory: Callable[..., RunningRse]) -> RunningRse:
    key = id(rse_factory)
    if key not in _SERVERS:
        _SERVERS.clear()
        _SERVERS[key] = rse_factory("fuzz")
    return _SERVERS[key]


def test_a_client_reconnects_by_itself_after_the_model_restarts(
    rse_factory: Callable[..., RunningRse],
) -> None:
    first = rse_factory("restarting")
    with first.client() as client:
        assert len(client.generate_random(4)) == 4
        first.stop()
        rse_factory("restarting")
        assert len(client.generate_random(4)) == 4, "a stale link is replaced, not reported"


def test_the_client_speaks_over_a_serial_port(tmp_path: Path) -> None:
    """As the Parsec service in a QEMU machine does, over /dev/virtio-ports/rse."""
    import os
    import pty
    import tty

    from parsec_service.rse_link.client import RseClient, is_serial_port

    controller, port = pty.openpty()
    tty.setraw(port)
    tty.setraw(controller)
    port_path = os.ttyname(port)
    assert is_serial_port(port_path)
    model = _model(tmp_path)
    os.write(controller, comms.frame(b"stale bytes from an earlier user"))

    def rse_side() -> None:
        """The RSE end: answer framed messages, the first one after a stale reply."""
        buffer = b""
        answered = 0
        while answered < 2:
            buffer += os.read(controller, 65536)
            while len(buffer) >= 4:
                (length,) = struct.unpack("<I", buffer[:4])
                if len(buffer) < 4 + length:
                    break
                message, buffer = buffer[4 : 4 + length], buffer[4 + length :]
                reply = model.handle_message(message)
                if answered == 0:  # a reply to some earlier, abandoned call comes first
                    stale = comms.encode_reply(comms.Reply(Header(0, 200, 0), Status.GENERIC_ERROR))
                    os.write(controller, comms.frame(stale))
                os.write(controller, comms.frame(reply))
                answered += 1

    thread = threading.Thread(target=rse_side, daemon=True)
    thread.start()
    with RseClient(port_path, client_id=5, timeout=5) as client:
        assert len(client.generate_random(16)) == 16
        assert len(client.generate_random(8)) == 8
    thread.join(timeout=10)
    os.close(controller)
    os.close(port)
