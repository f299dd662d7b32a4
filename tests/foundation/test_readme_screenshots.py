"""The README shows what `make screenshots` takes: every image it names exists, each main page in light and dark,
none heavier than a README should carry. (The demo is not run in CI just for pictures.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("overview", "service", "graph", "splits", "policies", "mesh")  # scripts/screenshots.py's PAGES


def _images() -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))


def test_it_names_only_images_that_exist():
    images = _images()
    assert images
    missing = [path for path in images if not (ROOT / path).is_file()]
    assert missing == [], missing


def test_it_shows_each_main_page_in_light_and_dark_under_300_kb():
    from scripts.screenshots import PAGES as TAKEN

    assert tuple(name for name, _path, _ready in TAKEN) == PAGES
    images = set(_images())
    for page in PAGES:
        for scheme in ("light", "dark"):
            path = f"docs/screenshots/{page}-{scheme}.png"
            assert path in images, path
            png = (ROOT / path).read_bytes()
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 300_000, (path, len(png))
