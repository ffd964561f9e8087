"""What `skylift simulate` shows: a live picture of the fleet and the campaign, and the final summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from skylift.simulator.device import Phase
from skylift.simulator.fleet import Tally
from skylift.simulator.verdict import Judgement

PHASE_ORDER = list(Phase)
CAMPAIGN_ORDER = ["pending", "notified", "downloading", "upgrading", "succeeded", "failed", "canceled", "skipped"]


def live(tally: Tally, campaign: dict[str, Any] | None, status: str) -> RenderableType:
    """One line for the fleet by phase, one for the campaign by state when there is one."""
    phases = tally.phases()
    lines = [Text.assemble((f"{len(tally.devices)} devices: ", "bold"), _counts(phases, PHASE_ORDER))]
    if campaign is not None:
        counts: dict[str, int] = campaign.get("counts", {})
        title = f"campaign {campaign['id']} ({campaign['state']}) → {campaign['version']}: "
        lines.append(Text.assemble((title, "bold"), _counts(counts, CAMPAIGN_ORDER)))
    lines.append(Text(status, style="dim"))
    return Group(*lines)


def _counts(counts: Mapping[Any, int], order: list[Any]) -> str:
    names = [name for name in order if counts.get(name)] + sorted(str(n) for n in set(counts) - set(order))
    return " · ".join(f"{name} {counts[name]}" for name in names) or "none yet"


def summary(judgement: Judgement) -> RenderableType:
    """Per behaviour: how many devices, what they should end as, how many did; then the counts side by side."""
    groups: dict[tuple[str, str], Counter[str]] = {}
    for verdict in judgement.verdicts:
        key = (verdict.spec.behaviour.label, str(verdict.expected))
        groups.setdefault(key, Counter())["ok" if verdict.ok else str(verdict.actual)] += 1
    behaviours = Table(title="Devices by behaviour", title_justify="left")
    behaviours.add_column("behaviour")
    behaviours.add_column("devices", justify="right")
    behaviours.add_column("expected")
    behaviours.add_column("as expected", justify="right")
    behaviours.add_column("otherwise")
    for (label, expected), outcomes in sorted(groups.items()):
        ok = outcomes.pop("ok", 0)
        otherwise = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.most_common())
        style = "red" if otherwise else ""
        behaviours.add_row(label, str(ok + sum(outcomes.values())), expected, str(ok), Text(otherwise, style=style))
    counts = Table(title="Campaign counts (these devices)", title_justify="left")
    counts.add_column("state or failure reason")
    counts.add_column("expected", justify="right")
    counts.add_column("actual", justify="right")
    for name, expected_map, actual_map in (
        ("", judgement.expected_counts, judgement.actual_counts),
        ("failed: ", judgement.expected_reasons, judgement.actual_reasons),
    ):
        for state in sorted(set(expected_map) | set(actual_map)):
            want, got = expected_map.get(state, 0), actual_map.get(state, 0)
            counts.add_row(f"{name}{state}", str(want), Text(str(got), style="" if want == got else "bold red"))
    return Group(behaviours, counts)


def fleet_summary(tally: Tally) -> RenderableType:
    """Without a campaign: where each kind of device ended."""
    table = Table(title="Devices by behaviour", title_justify="left")
    table.add_column("behaviour")
    table.add_column("devices", justify="right")
    table.add_column("ended as")
    groups: dict[str, Counter[str]] = {}
    for view in tally.devices.values():
        groups.setdefault(view.spec.behaviour.label, Counter())[f"{view.phase.value} on {view.version}"] += 1
    for label, ends in sorted(groups.items()):
        table.add_row(label, str(sum(ends.values())), ", ".join(f"{n} {end}" for end, n in ends.most_common()))
    return table
