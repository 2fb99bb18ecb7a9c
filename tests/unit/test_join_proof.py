"""The join's password proof (security/join_proof.py) and the member's sessions and tokens
(cluster/join_auth.py), without a network."""

from __future__ import annotations

import base64
import functools

import pytest

from cnm.cluster.handshake import AuthFinish, AuthStart
from cnm.cluster.join_auth import JoinAuthenticator, verifier_record
from cnm.cluster.records import UserRecord
from cnm.errors import AccessDenied, ConnectError, InsufficientPermissions, Unauthorized
from cnm.security import join_proof

PASSWORD = "a-long-secret"
BINDING = join_proof.tls_server_end_point(b"member certificate")


@functools.cache
def verifier() -> join_proof.Verifier:
    return join_proof.make_verifier(PASSWORD)


class Users:
    """The two snapshot accessors the authenticator uses."""

    def __init__(self, *users: UserRecord) -> None:
        self._users = {u.uid: u for u in users}

    def user(self, uid: int) -> UserRecord | None:
        return self._users.get(uid)

    def user_by_login(self, login: str) -> UserRecord | None:
        return next((u for u in self._users.values() if login in (u.email, u.name)), None)

    def jwt_secret(self) -> None:
        return None


def user(role: str = "admin") -> UserRecord:
    return UserRecord(
        uid=1, email="admin@example.com", role=role, join_verifier=verifier_record(verifier())
    )


def prove(
    members: JoinAuthenticator, snapshot: Users, password: str, *, seen: bytes = BINDING
) -> tuple[AuthFinish, bytes, join_proof.ClientKeys]:
    """The joiner's half: start, derive, sign; (finish message, AuthMessage, keys)."""
    nonce = join_proof.new_nonce()
    challenge = members.start(snapshot, AuthStart(username="admin@example.com", client_nonce=nonce))
    salt = base64.b64decode(challenge.salt)
    params = dict(
        time_cost=challenge.time_cost,
        memory_cost=challenge.memory_cost,
        parallelism=challenge.parallelism,
    )
    keys = join_proof.keys_of(join_proof.salted_password(password, salt, **params))
    message = join_proof.auth_message(
        username="admin@example.com",
        client_nonce=nonce,
        server_nonce=challenge.server_nonce,
        salt=salt,
        binding=seen,
        **params,
    )
    finish = AuthFinish(
        session=challenge.session,
        channel_binding=base64.b64encode(seen).decode(),
        client_proof=base64.b64encode(join_proof.client_proof(keys, message)).decode(),
    )
    return finish, message, keys


def test_the_right_password_proves_both_sides() -> None:
    members, snapshot = JoinAuthenticator(), Users(user())
    finish, message, keys = prove(members, snapshot, PASSWORD)
    answer = members.finish(snapshot, finish, BINDING)
    signature = base64.b64decode(answer.server_signature)
    assert join_proof.check_server_signature(keys.server_key, message, signature)
    assert members.admitted(snapshot, answer.token) is not None
    assert members.admitted(snapshot, "forged") is None
    # A session is good for one finish only.
    with pytest.raises(Unauthorized):
        members.finish(snapshot, finish, BINDING)


def test_a_wrong_password_is_access_denied() -> None:
    members, snapshot = JoinAuthenticator(), Users(user())
    finish, _, _ = prove(members, snapshot, "not-the-password")
    with pytest.raises(AccessDenied):
        members.finish(snapshot, finish, BINDING)


def test_another_certificate_seen_by_the_joiner_is_a_binding_mismatch() -> None:
    members, snapshot = JoinAuthenticator(), Users(user())
    other = join_proof.tls_server_end_point(b"a machine in the middle")
    finish, _, _ = prove(members, snapshot, PASSWORD, seen=other)
    with pytest.raises(ConnectError, match="channel binding mismatch"):
        members.finish(snapshot, finish, BINDING)
    # Claiming the member's binding does not help: the proof covers the one the joiner saw.
    finish, _, _ = prove(members, snapshot, PASSWORD, seen=other)
    forged = finish.model_copy(update={"channel_binding": base64.b64encode(BINDING).decode()})
    with pytest.raises(AccessDenied):
        members.finish(snapshot, forged, BINDING)


def test_a_proven_user_who_is_not_an_admin_is_refused() -> None:
    members, snapshot = JoinAuthenticator(), Users(user(role="db_viewer"))
    finish, _, _ = prove(members, snapshot, PASSWORD)
    with pytest.raises(InsufficientPermissions):
        members.finish(snapshot, finish, BINDING)


def test_an_unknown_user_gets_a_stable_challenge_and_the_same_refusal() -> None:
    members, snapshot = JoinAuthenticator(), Users()
    start = AuthStart(username="nobody@example.com", client_nonce="n" * 32)
    first = members.start(snapshot, start)
    again = members.start(snapshot, start)
    assert first.salt == again.salt and first.server_nonce != again.server_nonce
    finish, _, _ = prove(members, snapshot, PASSWORD)
    with pytest.raises(AccessDenied):
        members.finish(snapshot, finish, BINDING)


def test_the_verifier_keeps_no_password() -> None:
    record = verifier_record(verifier())
    assert PASSWORD not in record.model_dump_json()
    salted = join_proof.salted_password(
        PASSWORD, verifier().salt, time_cost=3, memory_cost=24576, parallelism=1
    )
    assert base64.b64encode(salted).decode() not in record.model_dump_json()
