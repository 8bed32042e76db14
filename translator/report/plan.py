"""The migration plan: servers and locations in the order to move them, each with what blocks it.

Order (stable within a tier: readiness, highest first, then file order):
1. fully translated (every scored directive exact) and shadow-verified;
2. fully translated, no shadow evidence yet (or not covered);
3. translated with caveats only (read each stated difference, then shadow it), and servers whose own
   directives translate but some of whose locations cannot (they move with those kept on nginx);
4. not translatable as it is (unsupported/unknown directives): strangler-fallback candidates, to keep
   on the legacy nginx while everything else moves.
Gaps outside any server (main/http/upstream) are listed first: they apply to every server.
"""

from __future__ import annotations

from translator.report.model import Report, Unit

TIERS = {
    1: "move first: fully translated and shadow-verified",
    2: "fully translated: shadow it, then move",
    3: "translated with caveats: check each difference, shadow it, then move",
    4: "strangler-fallback candidate: keep on the legacy nginx, move the rest",
}


def tier(unit: Unit) -> int:
    if unit.fallback_candidate:
        return 4
    if unit.counts.unsupported or unit.counts.unknown:
        return 3  # a server whose own directives translate, with locations that must stay on nginx
    if unit.counts.caveat:
        return 3
    return 1 if unit.shadow_verified else 2


def _what(unit: Unit, report: Report) -> str:
    if tier(unit) == 3 and (unit.counts.unsupported or unit.counts.unknown):
        held = [u.label for u in report.units if u.server == unit.key and u.kind == "location" and u.fallback_candidate]
        return ("its own directives translate; move it with these locations kept on the legacy nginx "
                f"(strangler fallback): {', '.join(held)}")
    return TIERS[tier(unit)]


def ordered(report: Report) -> list[Unit]:
    position = {unit.key: i for i, unit in enumerate(report.units)}
    return sorted(report.units, key=lambda u: (tier(u), -u.readiness, position[u.key]))


def _shadow(unit: Unit) -> str:
    if unit.shadow_verified is None:
        return "no shadow report given"
    if unit.shadow_verified:
        return f"shadow-verified ({unit.shadow_requests} requests, 0 differences)"
    if unit.shadow_requests == 0:
        return "not covered by the shadow traffic"
    return f"shadow showed differences or errors ({unit.shadow_requests} requests)"


def render(report: Report) -> str:
    out = [f"# Migration plan for `{report.config}`", "",
           (f"Overall readiness {100 * report.readiness:.1f}% ({report.totals.exact} of {report.totals.scored} "
            "scored directive occurrences translated exactly)."), ""]
    if report.global_blockers:
        out += ["## Gaps that apply to every server (main, http, upstream blocks)", ""]
        out += [f"- {blocker}" for blocker in report.global_blockers] + [""]
    out += ["## Order", ""]
    if not report.units:
        out.append("No server in this config: nothing to move.")
    for n, unit in enumerate(ordered(report), 1):
        kind = "server" if unit.kind == "server" else "location"
        out.append(f"{n}. **{unit.key}** ({kind}, `{unit.file}:{unit.line}`): {_what(unit, report)}. "
                   f"Readiness {100 * unit.readiness:.1f}% ({unit.counts.exact}/{unit.counts.scored}); {_shadow(unit)}.")
        if unit.blockers:
            out.append("   Blocked by:")
            out += [f"   - {blocker}" for blocker in unit.blockers]
    stubs = [entry for entry in report.entries if entry.stub]
    if stubs:
        out += ["", "## Lua to port", ""]
        out += [f"- `{entry.where}` {entry.directive} (phase {entry.phase}): stub `{entry.stub}`" for entry in stubs]
    return "\n".join(out) + "\n"
