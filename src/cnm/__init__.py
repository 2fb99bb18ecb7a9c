"""cnm: the cluster node manager.

One agent per host serves the bootstrap REST API of Redis Enterprise Software and turns a set of
machines into one cluster whose membership lives in etcd.
"""

__version__ = "0.1.0"
SOFTWARE_VERSION = "7.22.0-cnm.0.1.0"
