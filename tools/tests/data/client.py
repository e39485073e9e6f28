#!/usr/bin/env python3
"""Sends a known sequence of Rush request frames (docs/PROTOCOL.md) and reads the responses.

Used by make_captures.sh to produce the pcaps in this folder; tools/tests/capture.rs knows
the same sequences. Standard library only.

    client.py session HOST PORT   # 9 frames on one connection, in 6 TCP sends
    client.py lossy HOST PORT     # 40 PINGs, one TCP send each, no waiting in between
"""

import socket
import struct
import sys
import time

MAGIC = b"\x52\x53"
VERSION = 1
PING, QUERY_SKU, QUERY_ACCOUNT, QUERY_RESERVATION = 0x01, 0x05, 0x06, 0x07


def frame(opcode, request_id, body=b""):
    """A 64-byte request frame: the 16-byte header, then the body zero-padded to 48."""
    assert len(body) <= 48
    header = MAGIC + struct.pack("<BBHHQ", VERSION, opcode, 64, 0, request_id)
    return header + body + bytes(48 - len(body))


def ping(request_id):
    return frame(PING, request_id)


def query_account(request_id, account):
    return frame(QUERY_ACCOUNT, request_id, struct.pack("<Q", account))


def query_sku(request_id, sku):
    return frame(QUERY_SKU, request_id, struct.pack("<Q", sku))


def query_reservation_by_key(request_id, account, key):
    # account, target, target_kind 1 (the target is the RESERVE's request key)
    return frame(QUERY_RESERVATION, request_id, struct.pack("<QQB", account, key, 1))


def response_size(request):
    return 104 if request[3] == QUERY_SKU else 64


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=10)
    # One send, one segment: the captures show frames split and batched as sent.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise SystemExit(f"the server closed after {len(data)} of {count} response bytes")
        data += chunk
    return data


def check_responses(sock, requests):
    """Reads one response per request and checks the request ids came back."""
    expected = {struct.unpack_from("<Q", request, 8)[0] for request in requests}
    total = sum(response_size(request) for request in requests)
    data = read_exactly(sock, total)
    seen = set()
    at = 0
    while at < len(data):
        assert data[at : at + 2] == MAGIC, f"bad response magic at {at}"
        length = struct.unpack_from("<H", data, at + 4)[0]
        seen.add(struct.unpack_from("<Q", data, at + 8)[0])
        at += length
    assert seen == expected, f"responses for {sorted(seen)}, expected {sorted(expected)}"


def session(host, port):
    sock = connect(host, port)
    sends = [
        [ping(100)],
        [query_account(101, 42)],
        [query_sku(102, 1)],
        [query_reservation_by_key(103, 42, 1)],
        # Four PINGs pipelined in one send: one segment, four frames.
        [ping(104), ping(105), ping(106), ping(107)],
    ]
    for requests in sends:
        sock.sendall(b"".join(requests))
        check_responses(sock, requests)
    # One frame in two sends 50 ms apart: two segments, the frame completed by the second.
    last = ping(108)
    sock.sendall(last[:30])
    time.sleep(0.05)
    sock.sendall(last[30:])
    check_responses(sock, [last])
    sock.close()
    print("session: 9 frames sent, 9 responses read")


def lossy(host, port):
    sock = connect(host, port)
    requests = [ping(200 + index) for index in range(40)]
    for request in requests:
        sock.sendall(request)
        # A little space so that each send leaves as its own segment.
        time.sleep(0.002)
    check_responses(sock, requests)
    sock.close()
    print("lossy: 40 frames sent, 40 responses read")


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"session": session, "lossy": lossy}[mode](host, port)
