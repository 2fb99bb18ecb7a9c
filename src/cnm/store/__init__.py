"""The cluster store: the `Store` contract, its etcd backend and supervisor, and a memory fake."""
