"""The time windows a user can pick for charts and KPIs: one table, read by the picker, the page context and the
chart series."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    key: str  # as it appears in URLs: ?window=1h
    seconds: int
    label: str


WINDOWS: dict[str, Window] = {
    w.key: w
    for w in (
        Window("15m", 15 * 60, "15 min"),
        Window("1h", 3600, "1 hour"),
        Window("6h", 6 * 3600, "6 hours"),
        Window("24h", 24 * 3600, "24 hours"),
        Window("7d", 7 * 24 * 3600, "7 days"),
    )
}
DEFAULT_WINDOW = "1h"


def window_seconds(key: str) -> int:
    """The window's length; ValueError naming the choices for an unknown key."""
    try:
        return WINDOWS[key].seconds
    except KeyError:
        raise ValueError(f"unknown window {key!r}; choose one of {', '.join(WINDOWS)}") from None
