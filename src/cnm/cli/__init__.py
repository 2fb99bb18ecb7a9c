"""The `cnm` command: the agent (`cnm node run`) and a thin client of the REST API."""
