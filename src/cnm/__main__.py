"""`python -m cnm` runs the command line (as the `cnm` executable does)."""

from cnm.cli.main import app

app()
