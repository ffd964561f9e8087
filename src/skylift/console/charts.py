"""Charts drawn on the server as SVG: bars with their numbers beside them, and a title on hover.

No script and no library: the page is complete as it arrives, prints, and reads in a screen reader
(each chart has a title and each bar a text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

from skylift.campaigns.schemas import Results
from skylift.console.i18n import Catalog

# Colours by meaning; anything else takes the neutral one.
COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "canceled": "#8d8d8d",
    "skipped": "#b0b0b0",
    "pending": "#90a4ae",
    "notified": "#1e88e5",
    "downloading": "#3949ab",
    "upgrading": "#6a1b9a",
}
NEUTRAL = "#1565c0"
ROW = 26
LABEL_WIDTH = 120
BAR_WIDTH = 200
NUMBER_WIDTH = 90


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str = NEUTRAL
    text: str | None = None  # shown beside the bar instead of the value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _cut(label: str, length: int = 22) -> str:
    return label if len(label) <= length else label[: length - 1] + "…"


def bars(title: str, items: Sequence[Bar], empty: str) -> Markup:
    """Horizontal bars, one row each: label, bar, and the number (or `text`) beside it."""
    if not items:
        return Markup('<p class="chart-empty">{}</p>').format(empty)
    largest = max(item.value for item in items) or 1
    height = ROW * len(items) + 8
    width = LABEL_WIDTH + BAR_WIDTH + NUMBER_WIDTH
    rows = []
    for index, item in enumerate(items):
        y = 4 + index * ROW
        length = max(2.0, BAR_WIDTH * item.value / largest) if item.value else 0
        shown = item.text or _number(item.value)
        rows.append(
            f'<g class="bar"><title>{escape(item.label)}: {escape(shown)}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 17}" text-anchor="end">{escape(_cut(item.label))}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{length:.1f}" height="{ROW - 8}" rx="3" fill="{item.colour}"/>'
            f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 17}" class="value">{escape(shown)}</text></g>'
        )
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" style="max-width:{width}px"><title>{escape(title)}</title>'
        + "".join(rows)
        + "</svg>"
    )


def distribution(title: str, counts: dict[str, int], empty: str, names: dict[str, str] | None = None) -> Markup:
    """How many of each (versions, states, reasons), largest first, with the count and share beside;
    `names` shows a key (a state) in the reader's language, and states keep their colours."""
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    items = [
        Bar((names or {}).get(key, key), n, COLOURS.get(key, NEUTRAL), f"{n} ({100 * n / total:.0f} %)")
        for key, n in ordered
    ]
    return bars(title, items, empty)


def meter(title: str, share: float, label: str) -> Markup:
    """One share (0..1) as a filled bar with its percentage: a success rate, a progress."""
    share = min(max(share, 0.0), 1.0)
    percent = f"{100 * share:.0f} %"
    return Markup(
        '<svg class="chart meter" role="img" viewBox="0 0 400 34" width="100%" style="max-width:400px">'
        f"<title>{escape(title)}: {percent}</title>"
        '<rect x="0" y="6" width="300" height="20" rx="4" fill="#e0e0e0"/>'
        f'<rect x="0" y="6" width="{300 * share:.1f}" height="20" rx="4" fill="{COLOURS["succeeded"]}"/>'
        f'<text x="310" y="21" class="value">{percent}</text>'
        f"<desc>{escape(label)}</desc></svg>"
    )


def timeline(title: str, points: Sequence[tuple[datetime, int, int]], empty: str, legend: tuple[str, str]) -> Markup:
    """Devices finished per minute: succeeded and failed stacked, one column a minute (the last 60)."""
    points = list(points)[-60:]
    if not points:
        return Markup('<p class="chart-empty">{}</p>').format(empty)
    largest = max(ok + bad for _, ok, bad in points) or 1
    column, chart_height, top = 12, 120, 20
    width = max(len(points) * column + 60, 240)
    parts = []
    for index, (minute, ok, bad) in enumerate(points):
        x = 40 + index * column
        ok_height = chart_height * ok / largest
        bad_height = chart_height * bad / largest
        base = top + chart_height
        parts.append(
            f'<g class="bar"><title>{minute:%H:%M} UTC: {escape(legend[0])} {ok}, {escape(legend[1])} {bad}</title>'
            f'<rect x="{x}" y="{base - ok_height:.1f}" width="{column - 2}" height="{ok_height:.1f}" '
            f'fill="{COLOURS["succeeded"]}"/>'
            f'<rect x="{x}" y="{base - ok_height - bad_height:.1f}" width="{column - 2}" height="{bad_height:.1f}" '
            f'fill="{COLOURS["failed"]}"/></g>'
        )
    first, last = points[0][0], points[-1][0]
    base = top + chart_height + 16
    end_label = (
        f'<text x="{40 + len(points) * column + 30}" y="{base}" text-anchor="end">{last:%H:%M}</text>'
        if last != first
        else ""
    )
    axis = (
        f'<text x="36" y="{top + 8}" text-anchor="end">{largest}</text>'
        f'<text x="36" y="{top + chart_height}" text-anchor="end">0</text>'
        f'<text x="40" y="{base}">{first:%H:%M}</text>{end_label}'
        f'<rect x="40" y="4" width="10" height="10" fill="{COLOURS["succeeded"]}"/>'
        f'<text x="54" y="13">{escape(legend[0])} {sum(ok for _, ok, _ in points)}</text>'
        f'<rect x="150" y="4" width="10" height="10" fill="{COLOURS["failed"]}"/>'
        f'<text x="164" y="13">{escape(legend[1])} {sum(bad for _, _, bad in points)}</text>'
    )
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {top + chart_height + 22}" width="100%" '
        f'style="max-width:{width}px"><title>{escape(title)}</title>' + axis + "".join(parts) + "</svg>"
    )


def of_results(catalog: Catalog, results: Results) -> dict[str, Markup]:
    """The charts of a campaign's or a package's results (seed 000's 成功率, 失败原因, 版本分布), in the
    reader's language: success rate, devices by state, failure reasons, finished per minute, versions."""
    states = {state: catalog.gettext(state) for state in results.counts}
    reasons = {reason: catalog.translate(reason) for reason in results.failure_reasons}
    none_yet = catalog.gettext("No version reported yet.")
    return {
        "success": meter(
            catalog.gettext("Success rate"), results.success_rate, catalog.gettext("succeeded of the targeted devices")
        ),
        "states": distribution(
            catalog.gettext("Devices by state"), results.counts, catalog.gettext("No device."), states
        ),
        "reasons": distribution(
            catalog.gettext("Failure reasons"), results.failure_reasons, catalog.gettext("No failure."), reasons
        ),
        "timeline": timeline(
            catalog.gettext("Devices finished per minute"),
            [(p.minute, p.succeeded, p.failed) for p in results.timeline],
            catalog.gettext("No device has finished yet."),
            (catalog.gettext("succeeded"), catalog.gettext("failed")),
        ),
        "before": distribution(catalog.gettext("Versions before"), results.versions_before, none_yet),
        "after": distribution(catalog.gettext("Versions now"), results.versions_after, none_yet),
    }
