"""Where the tests find what they read: the repository, the shared corpus, the sample images,
and the files kept beside the tests (golden outputs, the Go tar reader, C sources)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
CORPUS = REPO.parent / "shared" / "corpus"
SAMPLES = REPO / "sample_images"
GOLDEN = TESTS / "golden"
GOTAR = TESTS / "gotar"
DATA = TESTS / "data"
