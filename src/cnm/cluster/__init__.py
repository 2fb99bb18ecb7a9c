"""The cluster: its records in the store, the in-memory snapshot of them, and the runtime."""
