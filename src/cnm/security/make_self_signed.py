"""`python -m cnm.security.make_self_signed COMMON_NAME KEY_FILE CERT_FILE [SAN ...]`: make a
node's pre-bootstrap HTTPS certificate and key (key 0600, written first) and exit.

The agent runs this as a child process at its first start (daemon.py `ensure_self_signed`)
instead of calling pki.py itself: making a key and certificate loads the `cryptography`
library, about ten MiB that would stay resident in the agent for as long as it runs, while the
certificate is made once per data directory. The child costs a few tenths of a second, once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cnm.security import key_files, pki


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    common_name, key_file, cert_file, *sans = argv
    pair = pki.make_self_signed(common_name, sans)
    # Key first: a certificate file means the pair is whole (`ensure_self_signed` checks both).
    key_files.write_private(Path(key_file), pair.key_pem)
    key_files.write_public(Path(cert_file), pair.cert_pem)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
