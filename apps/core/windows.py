"""The time windows a user can pick for charts and KPIs: one table, read by the picker, the page context and the
chart series."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


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


# A custom range: at least a minute (the charts' finest step), at most the longest window.
MIN_CUSTOM_SECONDS = 60
MAX_CUSTOM_SECONDS = max(w.seconds for w in WINDOWS.values())
# A window shorter than the default, chosen while a cluster's metrics are younger than the default window.
YOUNG_DATA_WINDOW = "15m"


@dataclass(frozen=True)
class TimeRange:
    """What a page and its charts show: a window ending now (`key` one of WINDOWS), or a custom from/to range."""

    key: str  # a WINDOWS key, or "custom"
    seconds: int
    end: float | None = None  # unix seconds; None: now

    @property
    def start(self) -> float | None:
        return None if self.end is None else self.end - self.seconds

    @property
    def custom(self) -> bool:
        return self.end is not None

    @property
    def query(self) -> str:
        """The URL parameters that give this range back (links carry it, so a copied URL shows the same data)."""
        if self.custom:
            return f"start={self.start:.0f}&end={self.end:.0f}"
        return f"window={self.key}"

    @property
    def label(self) -> str:
        if not self.custom:
            return WINDOWS[self.key].label
        return f"{self.seconds // 60} min ending {datetime.fromtimestamp(self.end, UTC):%Y-%m-%d %H:%M:%S} UTC"


def preset(key: str) -> TimeRange:
    return TimeRange(key, window_seconds(key))


def _instant(text: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give unix seconds or ISO 8601 (2026-12-01T10:00:00Z)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_range(params: Mapping[str, str], *, now: float) -> TimeRange | None:
    """The range the URL asks for (`start` and `end`, else `window`); None when it asks for none.
    ValueError, saying what is wrong, for a range that cannot be shown. (Not `from`/`to`: the Policies page's question
    uses those.)"""
    start, end = params.get("start"), params.get("end")
    if start or end:
        if not (start and end):
            raise ValueError("a custom range needs both start and end")
        first, last = _instant(start), _instant(end)
        if last > now + 60:
            raise ValueError("the range ends in the future")
        span = round(last - first)
        if span < MIN_CUSTOM_SECONDS:
            raise ValueError(f"a range must span at least {MIN_CUSTOM_SECONDS} s (start must be before end)")
        if span > MAX_CUSTOM_SECONDS:
            raise ValueError(f"a range may span at most {MAX_CUSTOM_SECONDS // 86400} days")
        return TimeRange("custom", span, round(last))
    key = params.get("window")
    if not key:
        return None
    window_seconds(key)  # ValueError naming the choices
    return preset(key)
