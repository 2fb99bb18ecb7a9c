"""Facts about this machine and the node's local state."""
