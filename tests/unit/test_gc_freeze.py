"""The agent keeps its start-up objects out of the cyclic garbage collector (daemon.py), so a
full collection under load walks only what was made since, not every imported module."""

from __future__ import annotations

import gc

from cnm.daemon import freeze_start_up_objects


def test_start_up_objects_are_frozen_and_full_collections_skip_them() -> None:
    before = gc.get_freeze_count()
    try:
        alive = len(gc.get_objects())
        frozen = freeze_start_up_objects()
        assert frozen >= before + alive // 2  # what was alive went to the permanent generation
        # A full collection now sees only what was made after the freeze.
        assert len(gc.get_objects()) < alive // 2
    finally:
        gc.unfreeze()
