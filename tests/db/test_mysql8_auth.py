"""MySQL 8's default login, caching_sha2_password, over a connection without TLS.

The compose file's database is MySQL 8.4. Its first login of an account after the server
starts (an empty cache) is the "full authentication": without TLS, the client asks for the
server's RSA public key and sends the password encrypted with it, which asyncmy does with the
`cryptography` package. No MySQL 8 server can be had from this project's package registries
(Debian's `default-mysql-server` is MariaDB, which has no caching_sha2_password), so this test
plays the server's side of that exchange, byte for byte as MySQL documents it, against the
real asyncmy client the service uses.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncmy
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

USER, PASSWORD = "movietickets", "a password for MySQL 8"
# Capability flags: LONG_PASSWORD, PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION, PLUGIN_AUTH,
# PLUGIN_AUTH_LENENC_CLIENT_DATA. No SSL: the client cannot send the password in the clear.
CAPABILITIES = 1 | 1 << 9 | 1 << 13 | 1 << 15 | 1 << 19 | 1 << 21
# The padding MySQL prescribes for the encrypted password (SHA-1 is its choice, not ours).
SHA1 = hashes.SHA1()  # noqa: S303
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=SHA1), algorithm=SHA1, label=None)
OK = b"\x00\x00\x00\x02\x00\x00\x00"  # no rows, no insert id, autocommit, no warnings


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(4)
    return header[3], await reader.readexactly(int.from_bytes(header[:3], "little"))


@dataclass
class FakeMySQL8:
    """MySQL 8.4's side of a login whose password is not cached yet."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    passwords: list[bytes] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._login(reader, writer)
            while True:  # commands: COM_QUIT ends, everything else is OK
                _, command = await _read_packet(reader)
                if command[:1] == b"\x01":
                    break
                writer.write(_packet(1, OK))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def _login(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        salt = bytes(secrets.choice(range(1, 128)) for _ in range(20))
        greeting = (
            b"\x0a8.4.3\x00"
            + (7).to_bytes(4, "little")
            + salt[:8]
            + b"\x00"
            + (CAPABILITIES & 0xFFFF).to_bytes(2, "little")
            + bytes([255])  # utf8mb4_0900_ai_ci
            + (2).to_bytes(2, "little")
            + (CAPABILITIES >> 16).to_bytes(2, "little")
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00caching_sha2_password\x00"
        )
        writer.write(_packet(0, greeting))
        _, response = await _read_packet(reader)
        user = response[32 : response.index(b"\x00", 32)]
        assert user == USER.encode()
        assert response.endswith(b"caching_sha2_password\x00")
        self.steps.append("scramble")
        writer.write(_packet(2, b"\x01\x04"))  # not cached: perform full authentication
        _, request = await _read_packet(reader)
        assert request == b"\x02"  # the client asks for the public key
        self.steps.append("public key")
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        writer.write(_packet(4, b"\x01" + public))
        _, encrypted = await _read_packet(reader)
        xored = self.key.decrypt(encrypted, OAEP)
        password = bytes(byte ^ salt[index % len(salt)] for index, byte in enumerate(xored))
        self.passwords.append(password)
        self.steps.append("encrypted password")
        if password == PASSWORD.encode() + b"\x00":
            writer.write(_packet(6, OK))
        else:
            error = b"\xff" + (1045).to_bytes(2, "little") + b"#28000Access denied"
            writer.write(_packet(6, error))
        await writer.drain()


@pytest.fixture
async def mysql8() -> AsyncIterator[tuple[FakeMySQL8, int]]:
    fake = FakeMySQL8()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield fake, port
    finally:
        server.close()
        await server.wait_closed()


async def test_full_authentication_without_tls(mysql8: tuple[FakeMySQL8, int]) -> None:
    fake, port = mysql8
    connection = await asyncmy.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD)
    try:
        await connection.ping(reconnect=False)
    finally:
        await connection.ensure_closed()
    assert fake.steps == ["scramble", "public key", "encrypted password"]
    assert fake.passwords == [PASSWORD.encode() + b"\x00"]


async def test_wrong_password_is_refused(mysql8: tuple[FakeMySQL8, int]) -> None:
    _, port = mysql8
    with pytest.raises(asyncmy.errors.OperationalError) as refused:
        await asyncmy.connect(host="127.0.0.1", port=port, user=USER, password="not it")
    assert refused.value.args[0] == 1045
