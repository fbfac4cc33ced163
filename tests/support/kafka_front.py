"""A TLS- and SASL-terminating front for the test broker, which can do neither itself.

Tansu advertises the front's address, so every connection a client makes goes
through it. The front terminates TLS (optionally requiring a client
certificate signed by a given CA) and, when users are given, authenticates
each connection the way a Kafka broker does before it forwards a single byte:

    ApiVersions      forwarded to Tansu, and the answer patched to offer
                     SaslHandshake (17) and SaslAuthenticate (36), which Tansu lacks
    SaslHandshake    answered here: the mechanism must be one of `mechanisms`
    SaslAuthenticate answered here: PLAIN (RFC 4616) or SCRAM-SHA-256/512
                     (RFC 5802/7677, as Kafka does it), checked against `users`

A failed authentication is answered with SASL_AUTHENTICATION_FAILED and the
connection closed, as Kafka does; a request other than these before
authentication closes it. Afterwards the connection is a plain pipe.
librdkafka therefore does its real handshake and its real SASL exchange.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.certificates import Pair
from tests.support.tansu import free_port

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
SCRAM_ITERATIONS = 4096
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


@dataclass
class FrontCounters:
    connections: int = 0
    authenticated: int = 0
    refused: list[str] = field(default_factory=list)  # why, per refused authentication


class KafkaFront:
    def __init__(
        self,
        server: Pair | None = None,
        client_ca: Path | None = None,
        users: dict[str, str] | None = None,
        mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ) -> None:
        self.port = free_port()
        self.backend_port = 0
        self.counters = FrontCounters()
        self._users = users
        self._mechanisms = mechanisms
        self._context: ssl.SSLContext | None = None
        if server is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(server.cert, server.key)
            if client_ca is not None:
                context.load_verify_locations(client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
            self._context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, backend_port: int) -> KafkaFront:
        self.backend_port = backend_port
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, ssl=self._context
        )

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.backend_port
            )
        except OSError:
            writer.close()
            return
        self._writers.add(upstream_writer)
        try:
            if self._users is not None and not await self._authenticate(
                reader, writer, upstream_reader, upstream_writer
            ):
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            for side in (writer, upstream_writer):
                with contextlib.suppress(OSError, RuntimeError):
                    side.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> bool:
        """The SASL exchange of one connection; True once the client is authenticated."""
        assert self._users is not None
        exchange: _Exchange | None = None
        while True:
            request = await _read_frame(reader)
            api_key, version, correlation = struct.unpack_from(">hhi", request)
            if api_key == API_VERSIONS:
                upstream_writer.write(_frame(request))
                await upstream_writer.drain()
                answer = await _read_frame(upstream_reader)
                writer.write(_frame(_offer_sasl(answer, version)))
            elif api_key == SASL_HANDSHAKE:
                mechanism = _string(request, _body_start(request))[0]
                if mechanism in self._mechanisms:
                    exchange = _Exchange(mechanism, self._users)
                error = 0 if exchange is not None else UNSUPPORTED_SASL_MECHANISM
                listed = b"".join(_short_string(name) for name in self._mechanisms)
                body = struct.pack(">hi", error, len(self._mechanisms)) + listed
                writer.write(_frame(struct.pack(">i", correlation) + body))
                if error:
                    await writer.drain()
                    return False
            elif api_key == SASL_AUTHENTICATE and exchange is not None and version <= 1:
                (size,) = struct.unpack_from(">i", request, _body_start(request))
                start = _body_start(request) + 4
                challenge, failure = exchange.step(request[start : start + size])
                error = SASL_AUTHENTICATION_FAILED if failure else 0
                message = _nullable_string(f"Authentication failed: {failure}" if failure else None)
                body = struct.pack(">h", error) + message + struct.pack(">i", len(challenge))
                body += challenge + (struct.pack(">q", 0) if version >= 1 else b"")
                writer.write(_frame(struct.pack(">i", correlation) + body))
                await writer.drain()
                if failure:
                    self.counters.refused.append(failure)
                    return False
                if exchange.done:
                    self.counters.authenticated += 1
                    return True
            else:
                # Kafka closes a connection that skips authentication.
                return False
            await writer.drain()

    def close(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        # Abort every connection and let the loop run their closing callbacks
        # before it stops: nothing is left for the garbage collector to warn about.
        for writer in self._writers:
            writer.transport.abort()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)


class _Exchange:
    """One connection's SASL mechanism, step by step, as the server side."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.mechanism = mechanism
        self.done = False
        self._users = users
        self._scram: tuple[str, str, bytes, str] | None = None  # user, nonce, salt, first message

    def step(self, message: bytes) -> tuple[bytes, str]:
        """(bytes to send back, reason it failed or "")."""
        if self.mechanism == "PLAIN":
            parts = message.split(b"\0")
            if len(parts) != 3:
                return b"", "malformed PLAIN message"
            user, password = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
            if self._users.get(user) != password or not password:
                return b"", "Invalid username or password"
            self.done = True
            return b"", ""
        if self._scram is None:
            return self._scram_first(message.decode(errors="replace"))
        return self._scram_final(message.decode(errors="replace"))

    def _scram_first(self, message: str) -> tuple[bytes, str]:
        if not message.startswith("n,,"):
            return b"", "malformed SCRAM client-first message"
        bare = message[3:]
        fields = dict(item.split("=", 1) for item in bare.split(",") if "=" in item)
        user, client_nonce = fields.get("n", ""), fields.get("r", "")
        if not user or not client_nonce:
            return b"", "malformed SCRAM client-first message"
        nonce = client_nonce + base64.b64encode(os.urandom(18)).decode()
        salt = hashlib.sha256(user.encode()).digest()[:16]
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
        self._scram = (user, nonce, salt, f"{bare},{server_first}")
        return server_first.encode(), ""

    def _scram_final(self, message: str) -> tuple[bytes, str]:
        assert self._scram is not None
        user, nonce, salt, first_messages = self._scram
        without_proof, _, proof_field = message.rpartition(",p=")
        fields = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
        if fields.get("r") != nonce or not proof_field:
            return b"", "SCRAM nonce mismatch"
        password = self._users.get(user)
        if password is None:
            return b"", "Invalid username or password"
        name = _HASHES[self.mechanism]
        salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, SCRAM_ITERATIONS)
        client_key = hmac.new(salted, b"Client Key", name).digest()
        stored_key = hashlib.new(name, client_key).digest()
        auth_message = f"{first_messages},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, name).digest()
        try:
            proof = base64.b64decode(proof_field, validate=True)
        except ValueError:
            return b"", "malformed SCRAM proof"
        if len(proof) != len(signature):
            return b"", "malformed SCRAM proof"
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(name, recovered).digest(), stored_key):
            return b"", "Invalid username or password"
        server_key = hmac.new(salted, b"Server Key", name).digest()
        verifier = base64.b64encode(hmac.new(server_key, auth_message, name).digest()).decode()
        self.done = True
        return f"v={verifier}".encode(), ""


def _offer_sasl(answer: bytes, request_version: int) -> bytes:
    """Tansu's ApiVersions answer with SaslHandshake v0-1 and SaslAuthenticate v0-1 offered."""
    correlation, error = struct.unpack_from(">ih", answer)
    offset = 6
    flexible = request_version >= 3 and error == 0
    if flexible:
        count, offset = _uvarint(answer, offset)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", answer, offset)
        offset += 4
    entries: dict[int, bytes] = {}
    for _ in range(max(count, 0)):
        key = struct.unpack_from(">h", answer, offset)[0]
        end = offset + 6
        if flexible:
            tags, end = _uvarint(answer, end)
            if tags:
                raise ValueError("tagged fields in an ApiVersions entry are not expected")
        entries[key] = answer[offset:end]
        offset = end
    tail = b"\0" if flexible else b""
    for key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
        entries[key] = struct.pack(">hhh", key, 0, 1) + tail
    listed = b"".join(entries[key] for key in sorted(entries))
    header = struct.pack(">ih", correlation, error)
    size = _to_uvarint(len(entries) + 1) if flexible else struct.pack(">i", len(entries))
    return header + size + listed + answer[offset:]


def _body_start(request: bytes) -> int:
    """Where a non-flexible (header v1) request's body starts: after the client id."""
    (length,) = struct.unpack_from(">h", request, 8)
    return 10 + max(length, 0)


def _string(data: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", data, offset)
    start = offset + 2
    return data[start : start + length].decode(errors="replace"), start + length


def _short_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _nullable_string(text: str | None) -> bytes:
    return struct.pack(">h", -1) if text is None else _short_string(text)


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _to_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= 1 << 20:
        raise ValueError(f"unexpected request size {size} before authentication")
    return await reader.readexactly(size)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
