"""Where the tests find the vendors' own API payloads: ``tests/samples/``, copied with their
provenance (``tests/samples/PROVENANCE.md``) from the team's shared samples, so a clean
clone (CI's) runs every test that reads them instead of skipping it."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"
