"""The join's password proof: SCRAM-SHA-256 in spirit (RFC 5802/7677), argon2id keys, TLS-bound.

A joiner proves it knows an admin's password, and the member proves the cluster knows it too,
without the password (or anything a replay could use) crossing the wire:

- SaltedPassword = argon2id(password, per-user salt, the cluster's argon2 parameters);
  ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = SHA-256(ClientKey),
  ServerKey = HMAC(SaltedPassword, "Server Key"). A user record keeps salt, parameters,
  StoredKey and ServerKey (`Verifier`), never the password nor the salted password.
- AuthMessage binds the user, both nonces, the salt and parameters and the TLS channel: the
  `tls-server-end-point` binding of RFC 5929, the SHA-256 of the member's certificate as the
  joiner saw it (ours are all signed with SHA-256, so the RFC's hash is SHA-256).
- ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage); the member recovers ClientKey and
  checks SHA-256 of it against StoredKey. ServerSignature = HMAC(ServerKey, AuthMessage) proves
  the member holds ServerKey. A machine in the middle has another certificate, so the binding
  differs and neither proof verifies; what it sees allows only offline guesses at argon2id cost.

Primitives are hashlib/hmac and argon2-cffi's `hash_secret_raw`; nothing here is hand-rolled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw

# The cluster's argon2id parameters (security/passwords.py's hasher): t=3, 24 MiB, one lane.
TIME_COST = 3
MEMORY_COST = 24576
PARALLELISM = 1
KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 24
# Bounds a joiner accepts from a member: an attacker must not make it burn memory or time.
MAX_TIME_COST = 10
MAX_MEMORY_COST = 262144


@dataclass(frozen=True)
class Verifier:
    """What a user record keeps for the proof (as secret as a password hash)."""

    salt: bytes
    time_cost: int
    memory_cost: int
    parallelism: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class ClientKeys:
    client_key: bytes
    stored_key: bytes
    server_key: bytes


def salted_password(
    password: str, salt: bytes, *, time_cost: int, memory_cost: int, parallelism: int
) -> bytes:
    """argon2id of the password: the costly step, run off the event loop by callers."""
    return hash_secret_raw(
        password.encode("utf-8"),
        salt,
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def keys_of(salted: bytes) -> ClientKeys:
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return ClientKeys(
        client_key=client_key,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha256"),
    )


def make_verifier(password: str) -> Verifier:
    """A fresh verifier for `password` (new random salt). Raises UnicodeEncodeError for a
    password that is not valid text (callers refuse it earlier)."""
    salt = secrets.token_bytes(SALT_BYTES)
    keys = keys_of(
        salted_password(
            password,
            salt,
            time_cost=TIME_COST,
            memory_cost=MEMORY_COST,
            parallelism=PARALLELISM,
        )
    )
    return Verifier(
        salt=salt,
        time_cost=TIME_COST,
        memory_cost=MEMORY_COST,
        parallelism=PARALLELISM,
        stored_key=keys.stored_key,
        server_key=keys.server_key,
    )


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 channel binding of a TLS server certificate signed with SHA-256."""
    return hashlib.sha256(cert_der).digest()


def auth_message(
    *,
    username: str,
    client_nonce: str,
    server_nonce: str,
    salt: bytes,
    time_cost: int,
    memory_cost: int,
    parallelism: int,
    binding: bytes,
) -> bytes:
    """Every value both sides agree on, length-prefixed so no two tuples share an encoding."""
    parts = [
        b"cnm-join-proof-v1",
        username.encode("utf-8", "surrogatepass"),
        client_nonce.encode(),
        server_nonce.encode(),
        salt,
        f"{time_cost},{memory_cost},{parallelism}".encode(),
        binding,
    ]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def client_proof(keys: ClientKeys, message: bytes) -> bytes:
    return _xor(keys.client_key, hmac.digest(keys.stored_key, message, "sha256"))


def check_client_proof(stored_key: bytes, message: bytes, proof: bytes) -> bool:
    """Whether `proof` was made by someone holding ClientKey for this very message."""
    if len(proof) != KEY_BYTES:
        return False
    client_key = _xor(proof, hmac.digest(stored_key, message, "sha256"))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def server_signature(server_key: bytes, message: bytes) -> bytes:
    return hmac.digest(server_key, message, "sha256")


def check_server_signature(server_key: bytes, message: bytes, signature: bytes) -> bool:
    return hmac.compare_digest(server_signature(server_key, message), signature)
