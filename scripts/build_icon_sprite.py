"""Build static/vendor/lucide/icons.svg, one SVG sprite of the Lucide icons the pages use, from the npm package.

    cd "$(mktemp -d)" && npm pack lucide-static@1.62.0 && tar xzf lucide-static-*.tgz
    python scripts/build_icon_sprite.py "$PWD/package"

Each icon becomes a <symbol id="NAME"> that pages draw with <svg><use href="icons.svg#NAME"/></svg>: one request for
every icon, no icon font, nothing inline (the CSP forbids inline scripts, and a sprite needs none).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ICONS = [
    "lock",
    "lock-open",
    "triangle-alert",
    "circle-check",
    "circle-x",
    "circle-help",
    "circle-dashed",
    "check",
    "x",
    "info",
    "search",
    "moon",
    "sun",
    "monitor",
    "arrow-left",
    "arrow-right",
    "chevron-right",
    "external-link",
    "house",
    "log-out",
    "refresh-cw",
    "download",
]
DRAWING = ' fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"'
OUT = Path(__file__).resolve().parents[1] / "static" / "vendor" / "lucide" / "icons.svg"


def symbol(name: str, source: str) -> str:
    body = re.search(r"<svg[^>]*>(.*)</svg>", source, re.S)
    if not body:
        raise SystemExit(f"{name}: no <svg> element")
    inner = " ".join(line.strip() for line in body.group(1).strip().splitlines())
    # The drawing attributes sit on each symbol: a <use> clones the symbol, not the sprite's root element.
    return f'<symbol id="{name}" viewBox="0 0 24 24"{DRAWING}>{inner}</symbol>'


def main(package: Path) -> None:
    version = re.search(r'"version":\s*"([^"]+)"', (package / "package.json").read_text()).group(1)
    symbols = [symbol(name, (package / "icons" / f"{name}.svg").read_text()) for name in ICONS]
    OUT.write_text(
        f"<!-- Lucide icons (lucide-static {version}, ISC, see LICENSE), built by scripts/build_icon_sprite.py -->\n"
        '<svg xmlns="http://www.w3.org/2000/svg">\n' + "\n".join(symbols) + "\n</svg>\n"
    )
    print(f"{OUT.name}: {len(symbols)} icons, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
