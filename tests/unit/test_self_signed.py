"""The first start's self-signed HTTPS certificate is made by a child process (so the agent does
not keep `cryptography` loaded); a failure there stops the start with the child's reason."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cnm.daemon import ensure_self_signed
from cnm.errors import ConfigError
from cnm.security import cert_facts


def test_the_certificate_and_its_private_key_are_made_and_then_kept(tmp_path: Path) -> None:
    cert_file, key_file = ensure_self_signed(tmp_path, "127.0.0.9")
    assert cert_facts.common_name(cert_file.read_bytes()) == "cnm node 127.0.0.9"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    made = cert_file.read_bytes()
    # A second start keeps them.
    assert ensure_self_signed(tmp_path, "127.0.0.9") == (cert_file, key_file)
    assert cert_file.read_bytes() == made


def test_a_child_that_fails_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    # An address pki refuses as a name (not IDNA-encodable ASCII): the child exits non-zero.
    with pytest.raises(ConfigError, match="could not make the self-signed HTTPS certificate"):
        ensure_self_signed(tmp_path, "bücher.example")
    assert not any(tmp_path.rglob("*.pem"))
