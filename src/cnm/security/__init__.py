"""Security leaves of cnm: the cluster's X.509 PKI (etcd mTLS, HTTPS) and password hashing."""
