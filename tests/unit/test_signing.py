"""The signer child process (security/signing.py, security/signer_process.py): real children,
killed, stalled and made to answer garbage; the agent side gets a result or a clear 503."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cnm.errors import BadRequest, SignerUnavailable
from cnm.security import pki, signer_process, signing
from harness.polling import eventually

SANS = ["127.0.0.5"]


def gone(pid: int) -> bool:
    """The process has exited and been reaped (no zombie left)."""
    return not Path(f"/proc/{pid}").exists()


def fake_child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_requests_are_signed_by_a_child_that_exits_when_idle() -> None:
    signer = signing.Signer(idle=0.5)
    made = await signer.call("make_ca", {"cluster_name": "c.example.com"})
    pid = signer.pid
    assert pid is not None and pid != os.getpid()
    ca = pki.CertKey(made["cert_pem"].encode(), made["key_pem"].encode())
    args = {
        "ca": {"cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()},
        "uid": 7,
        "sans": SANS,
        "lifetime": 3600.0,
    }
    issued = await signer.call("issue_node_cert", args)
    assert pki.verify_chain(issued["cert_pem"].encode(), ca.cert_pem)
    assert pki.certificate_uid(issued["cert_pem"].encode()) == 7
    assert signer.pid == pid and signer.started == 1  # one child for both
    eventually(lambda: gone(pid), timeout=10, message="the idle signer exits and is reaped")
    assert signer.pid is None
    # The next request starts a new one.
    await signer.call("make_ca", {"cluster_name": "c.example.com"})
    assert signer.started == 2
    signer.close()


async def test_the_agent_operations_round_trip() -> None:
    ca = await signing.make_ca("ops.example.com")
    node = await signing.issue_node_cert(ca, 3, SANS, lifetime=timedelta(hours=1))
    assert await signing.verify_chain(node.cert_pem, ca.cert_pem)
    other_ca = await signing.make_ca("other.example.com")
    assert not await signing.verify_chain(node.cert_pem, other_ca.cert_pem)
    store = await signing.issue_store_client_cert(ca, 3)
    assert pki.verify_chain(store.cert_pem, ca.cert_pem)
    recovered = await signing.issue_cert(ca, "cnm node 127.0.0.5", SANS)
    assert pki.verify_chain(recovered.cert_pem, ca.cert_pem)
    csr, _ = await signing.make_csr("cnm node", [])
    signature = await signing.sign_data(node.key_pem, csr)
    assert await signing.verify_data(node.cert_pem, csr, signature)
    assert not await signing.verify_data(node.cert_pem, csr + b"x", signature)
    renewed = await signing.sign_node_csr(ca, csr, uid=3, sans=SANS, lifetime=timedelta(hours=2))
    assert pki.certificate_uid(renewed) == 3 and pki.verify_chain(renewed, ca.cert_pem)
    await signing.check_csr(csr)


async def test_a_bad_csr_is_a_400_from_the_child() -> None:
    with pytest.raises(BadRequest, match="certificate signing request is not a valid PEM CSR"):
        await signing.check_csr(b"-----BEGIN CERTIFICATE REQUEST-----\njunk\n")


async def test_a_killed_child_is_replaced_and_the_request_answered() -> None:
    signer = signing.Signer()
    await signer.call("make_ca", {"cluster_name": "k.example.com"})
    pid = signer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: gone(pid), timeout=10, message="the killed signer is reaped")
    answer = await signer.call("make_ca", {"cluster_name": "k.example.com"})
    assert answer["cert_pem"].startswith("-----BEGIN CERTIFICATE")
    assert signer.started == 2 and signer.pid not in (None, pid)
    signer.close()


async def test_a_child_that_dies_on_every_request_is_a_503_naming_it() -> None:
    code = "import sys, os; sys.stdin.buffer.readline(); os._exit(3)"
    signer = signing.Signer(command=fake_child(code))
    with pytest.raises(SignerUnavailable, match="exited twice before answering"):
        await signer.call("make_ca", {"cluster_name": "x"})
    assert signer.started == 2


async def test_a_child_that_does_not_answer_is_killed_and_a_503() -> None:
    code = "import sys, time; sys.stdin.buffer.readline(); time.sleep(60)"
    signer = signing.Signer(command=fake_child(code), timeout=0.5)
    with pytest.raises(SignerUnavailable, match="did not answer within"):
        await signer.call("make_ca", {"cluster_name": "x"})
    assert signer.pid is None
    assert signer.started == 1


async def test_a_child_answering_garbage_is_killed_and_a_503() -> None:
    code = "import sys; sys.stdin.buffer.readline(); print('not json', flush=True); input()"
    signer = signing.Signer(command=fake_child(code))
    with pytest.raises(SignerUnavailable, match="unreadable"):
        await signer.call("make_ca", {"cluster_name": "x"})
    assert signer.pid is None


async def test_a_child_that_cannot_start_is_a_503() -> None:
    signer = signing.Signer(command=["/nonexistent/python"])
    with pytest.raises(SignerUnavailable, match="could not start the certificate signer"):
        await signer.call("make_ca", {"cluster_name": "x"})


async def test_concurrent_requests_share_one_child() -> None:
    signer = signing.Signer()
    answers = await asyncio.gather(
        *(signer.call("make_ca", {"cluster_name": f"n{i}.example.com"}) for i in range(20))
    )
    assert len({a["cert_pem"] for a in answers}) == 20
    assert signer.started == 1
    signer.close()


async def test_close_ends_the_child_and_a_later_request_starts_another() -> None:
    signer = signing.Signer()
    signer.warm()
    eventually(lambda: signer.pid is not None, timeout=10, message="warm starts a child")
    pid = signer.pid
    assert pid is not None
    signer.close()
    eventually(lambda: gone(pid), timeout=10, message="the closed signer exits and is reaped")
    await signer.call("make_ca", {"cluster_name": "x"})
    assert signer.started == 2
    signer.close()


def test_the_child_refuses_what_is_not_a_request() -> None:
    assert signer_process.answer(b"not json") is None
    assert signer_process.answer(json.dumps({"op": "rm -rf", "args": {}}).encode()) is None
    assert signer_process.answer(json.dumps({"op": "make_ca", "args": []}).encode()) is None
    missing = signer_process.answer(json.dumps({"op": "make_ca", "args": {}}).encode())
    assert missing == {"error": {"code": "value_error", "message": "KeyError: 'cluster_name'"}}


def test_the_child_exits_at_end_of_input_and_on_a_stray_line() -> None:
    command = [sys.executable, "-m", "cnm.security.signer_process", "--idle", "30"]
    request = json.dumps({"op": "make_ca", "args": {"cluster_name": "x"}}) + "\n"
    done = subprocess.run(
        command, input=request.encode(), capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["ok"]["cert_pem"].startswith("-----BEGIN CERTIFICATE")
    stray = subprocess.run(command, input=b"hello\n", capture_output=True, timeout=30, check=False)
    assert stray.returncode == 2 and stray.stdout == b""
    usage = subprocess.run(command[:3], capture_output=True, timeout=30, check=False)
    assert usage.returncode == 2


async def test_license_signatures_are_checked_by_the_child(tmp_path: Path) -> None:
    from cnm.cluster.license import canonical_json, generate_key_pair, load_private_key

    private, public = generate_key_pair()
    key_file = tmp_path / "vendor.pub.pem"
    key_file.write_bytes(public)
    signed = canonical_json({"owner": "Acme"})
    signature = load_private_key(private).sign(signed)
    for keys in ([str(key_file)], [public.decode()]):
        assert await signing.license_signature_verdict(keys, signed, signature) is None
    forged = await signing.license_signature_verdict([str(key_file)], signed + b" ", signature)
    assert forged is not None and "does not verify" in forged
    missing = await signing.license_signature_verdict([str(tmp_path / "gone.pem")], signed, b"")
    assert missing is not None and "none of the configured license public keys" in missing
