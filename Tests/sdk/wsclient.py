"""A deliberately small WebSocket client over a plain socket, for the transport tests (SPEC §10): it can do what a
well-behaved library will not (fragment at will, put a PING between fragments, send invalid UTF-8, oversized or
binary messages, stop reading), and it shares no code with the server, so the server is not only tested by the
client it serves. Client frames are masked with the all-zero key (legal in RFC 6455, and it keeps the payload
readable and the test fast)."""
import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def accept_for(key):
    """RFC 6455 §4.2.2: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode, payload=b"", fin=True):
    """One client frame (masked, zero key)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Handshake:
    """The server's answer to an upgrade request: status, headers (lower-case names), body."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


class RawWebSocket:
    """A client connection. `connect()` sends the handshake (plus `extra`, bytes written in the same send right
    behind it) and reads the answer; a 101 leaves the socket ready for frames."""

    def __init__(self, root, path="/v1/ws/session", key="raw-test", headers=None, rcvbuf=None, timeout=30.0):
        host, port = root.split("//", 1)[1].split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window follows
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        self.host, self.port, self.path, self.api_key = host, int(port), path, key
        self.extra_headers = headers
        self.buffer = b""
        self.received_bytes = 0
        self.client_key = base64.b64encode(os.urandom(16)).decode()

    def request_head(self):
        headers = {"Host": f"{self.host}:{self.port}", "Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Key": self.client_key, "Sec-WebSocket-Version": "13"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.extra_headers is not None:
            headers.update(self.extra_headers)
        headers = {k: v for k, v in headers.items() if v is not None}
        return (f"GET {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()

    def connect(self, extra=b""):
        self.sock.sendall(self.request_head() + extra)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = b""
        if status != 101:
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Handshake(status, headers, body)

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.received_bytes += len(data)
        self.buffer += data

    def _take(self, n):
        while len(self.buffer) < n:
            self._fill()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, data):
        self.sock.sendall(data)

    def send_text(self, text):
        self.sock.sendall(frame(TEXT, text))

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def recv_frame(self):
        """(fin, opcode, payload) of the next server frame (server frames are never masked)."""
        b0, b1 = self._take(2)
        assert b1 & 0x80 == 0, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._take(n)

    def recv_json(self):
        """The next TEXT message as JSON (fails on anything else)."""
        fin, opcode, payload = self.recv_frame()
        assert (fin, opcode) == (True, TEXT), f"expected one TEXT frame, got fin={fin} opcode={opcode} {payload[:200]!r}"
        return json.loads(payload)

    def recv_close(self):
        """Reads until the server's Close; returns (code, reason). Data frames before it are skipped."""
        while True:
            _, opcode, payload = self.recv_frame()
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode()

    def close(self, code=1000):
        """Sends Close and waits for the server's; returns its code."""
        self.send(frame(CLOSE, close_payload(code)))
        return self.recv_close()[0]

    def at_eof(self, timeout=10.0):
        """True once the server closed the TCP connection (within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return True
            if not data:
                return True
        return False

    def drop(self):
        self.sock.close()
