"""`python -m cnm` runs the command line."""

from cnm.cli.main import app

app()
