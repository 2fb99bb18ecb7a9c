"""Security leaves of cnm: the cluster's X.509 PKI (etcd mTLS, HTTPS) and password hashing.

`pki` is built on the `cryptography` library, about fourteen MiB of resident memory once loaded.
The agent never loads it: its certificate work runs in a signer child process that exits when
idle (`signing`, `signer_process`), and what it reads of certificates needs no library
(`cert_facts`, `node_certs`, `tls_trust`). For the command line and the child, `pki` is loaded
lazily (importlib's `LazyLoader`): `from cnm.security import pki` gives a module whose code runs
at its first attribute access, so importing a module that names it costs nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING


def _lazy(name: str) -> ModuleType:
    """The module `name`, registered now but executed at its first attribute access."""
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module {name}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from cnm.security import pki as pki
else:
    pki = _lazy("cnm.security.pki")
