"""Security leaves of cnm: the cluster's X.509 PKI (etcd mTLS, HTTPS) and password hashing.

`pki` is built on the `cryptography` library, about fourteen MiB of resident memory once loaded.
The agent never imports it: its certificate work runs in a signer child process that exits when
idle (`signing`, `signer_process`), and what it reads of certificates needs no library
(`cert_facts`, `node_certs`, `tls_trust`). Only those children (`signer_process`,
`make_self_signed`) and the tests import `pki`; tests/unit/test_agent_imports.py keeps it so.
"""
