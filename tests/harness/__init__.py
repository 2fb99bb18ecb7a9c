"""Test harness: real agent processes on 127.0.0.x, deadline polling, artefacts on failure."""
