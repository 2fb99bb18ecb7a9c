"""The documentation's example bodies (docs/api-contract.md §8), for the parser and API tests."""

from __future__ import annotations

# The two example bodies of the documentation (seed-bootstrap-doc.txt), verbatim: invalid JSON,
# commas missing after the "ephemeral_path", "bigstore_driver" and "addr" values.
DOC_JOIN_BODY = """\
{
    "action": "join_cluster",
    "cluster": {
       "nodes":[ "1.1.1.1", "2.2.2.2" ]
    },
    "node": {
       "paths": {
          "persistent_path": "/path/to/persistent/storage",
          "ephemeral_path": "/path/to/ephemeral/storage"
          "bigstore_path": "/path/to/bigstore/storage"
       },
       "bigstore_driver": "rocksdb"
       "identity": {
          "addr":"1.2.3.4"
          "external_addr":["2001:0db8:85a3:0000:0000:8a2e:0370:7334", "3.4.5.6"]
       }
    },
    "credentials": {
       "username": "my_username",
       "password": "my_password"
    }
}
"""

DOC_CREATE_BODY = """\
{
    "action": "create_cluster",
    "cluster": {
       "nodes": [],
       "name": "my.cluster"
    },
    "node": {
       "paths": {
          "persistent_path": "/path/to/persistent/storage",
          "ephemeral_path": "/path/to/ephemeral/storage"
          "bigstore_path": "/path/to/bigredis/storage"
       },
       "identity": {
          "addr":"1.2.3.4"
          "external_addr":["2001:0db8:85a3:0000:0000:8a2e:0370:7334", "3.4.5.6"]
       },
       "bigstore_driver": "rocksdb"
    },
    "license": "",
    "credentials": {
       "username": "my_username",
       "password": "my_password"
    }
}
"""
