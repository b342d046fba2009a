"""The cases of the alertmanager_routing_check module, and the report table.

A case is one row of the routing test table: the synthetic alert (and its
inhibited_by source alerts) planned from the module's options, what is expected
of it and what was observed. The report is the plain-text table of all cases and
the module's final message.
"""

from __future__ import annotations

import datetime
import re

ALERT_LIFETIME = datetime.timedelta(hours=1)
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - datetime.UTC needs Python 3.11


def rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def join(names):
    return ",".join(names) if names else "(none)"


def bracket(names):
    return "[" + ", ".join(str(name) for name in names) + "]"


class SourceAlert:
    """An inhibited_by source alert of a case."""

    def __init__(self, case, alert_id, alert):
        self.case = case
        self.id = alert_id
        self.alert = alert
        self.routed = None

    @property
    def what(self):
        return f"inhibiting source alert {self.id} (case {self.case.name})"

    def result(self):
        return {"id": self.id, "labels": self.alert["labels"], "routed": self.routed}


class Case:
    """One row of the routing test table: what is expected and what was observed."""

    def __init__(self, index, name, spec, alert_id, alert):
        self.index = index
        self.name = name
        self.id = alert_id
        self.alert = alert
        self.sources = []
        self.expected = sorted(set(spec["receivers"]))
        inhibited = spec.get("inhibited")
        if inhibited is None and spec.get("inhibited_by"):
            inhibited = True
        self.expected_inhibited = inhibited
        self.routed_per_am = {}
        self.state_per_am = {}
        self.inhibited_per_am = {}
        self.silenced = None
        self.matched = None
        self.delivered = None
        self.delivered_to = None
        self.seconds_to_active = None
        self.seconds_to_delivery = None
        self.resolved = None
        self.resolved_notified = None
        self.problems = []
        self.notes = []

    @property
    def isolated(self):
        """Inhibition cases run on their own, so that no other case's alert can inhibit them."""
        return self.expected_inhibited is not None

    @property
    def what(self):
        return f"alert {self.id} (case {self.name})"

    @property
    def alert_ids(self):
        return [source.id for source in self.sources] + [self.id]

    @property
    def routed(self):
        if not self.routed_per_am:
            return None
        return sorted({name for names in self.routed_per_am.values() for name in names})

    @property
    def inhibited(self):
        if not self.inhibited_per_am:
            return None
        return all(self.inhibited_per_am.values())

    @property
    def ok(self):
        return self.matched is True and not self.problems

    def result(self):
        return {
            "name": self.name,
            "index": self.index,
            "id": self.id,
            "labels": self.alert["labels"],
            "expected": self.expected,
            "expected_inhibited": self.expected_inhibited,
            "sources": [source.result() for source in self.sources],
            "routed": self.routed,
            "routed_per_am": self.routed_per_am,
            "matched": self.matched,
            "inhibited": self.inhibited,
            "inhibited_per_am": self.inhibited_per_am,
            "state_per_am": self.state_per_am,
            "silenced": self.silenced,
            "delivered": self.delivered,
            "delivered_to": self.delivered_to,
            "seconds_to_active": self.seconds_to_active,
            "seconds_to_delivery": self.seconds_to_delivery,
            "resolved": self.resolved,
            "resolved_notified": self.resolved_notified,
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------- plan
def option_problems(params):
    """What is wrong with the module's options, before anything is sent."""
    problems = []
    if not params["urls"]:
        problems.append("urls must list at least one Alertmanager base URL")
    if not params["cases"]:
        problems.append("cases must hold at least one case")
    smoke_label = params["smoke_label"]
    if not LABEL_NAME.match(smoke_label or ""):
        problems.append(f"smoke_label {smoke_label!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    for option in ("poll_interval", "wait_active_timeout", "delivery_timeout", "timeout"):
        if params[option] <= 0:
            problems.append(f"{option} must be greater than 0, got {params[option]}")
    if params["max_unavailable"] < 0:
        problems.append(f"max_unavailable must not be negative, got {params['max_unavailable']}")
    if params["delivery_grace"] < 0:
        problems.append(f"delivery_grace must not be negative, got {params['delivery_grace']}")
    for number, spec in enumerate(params["cases"] or [], start=1):
        name = spec.get("name") or f"case {number}"
        if not spec["labels"]:
            problems.append(f"case {name!r}: labels must not be empty")
        if any(not isinstance(source, dict) or not source for source in spec.get("inhibited_by") or []):
            problems.append(f"case {name!r}: every inhibited_by entry must be a non-empty dict of labels")
    return problems


def plan_cases(specs, run_id, smoke_label, annotations=None, generator_url=None):
    """The cases of ``specs`` (the cases option), each with its alert and source alerts, ids included."""
    width = max(2, len(str(len(specs))))
    starts = utcnow()
    timing = {"startsAt": rfc3339(starts), "endsAt": rfc3339(starts + ALERT_LIFETIME)}
    extra = {str(k): "" if v is None else str(v) for k, v in (annotations or {}).items()}

    def alert(labels, alert_id, summary, description):
        labels = {str(key): "" if value is None else str(value) for key, value in labels.items()}
        labels[smoke_label] = alert_id
        posted = {"labels": labels, "annotations": dict(extra, summary=summary, description=description), **timing}
        if generator_url:
            posted["generatorURL"] = generator_url
        return posted

    cases = []
    for index, spec in enumerate(specs, start=1):
        number = str(index).zfill(width)
        name = spec.get("name") or f"case {index}"
        case_id = f"{run_id}-{number}"
        receivers = ", ".join(sorted(set(spec["receivers"]))) or "none"
        description = (
            f"Synthetic alert {case_id} posted by the alertmanager_routing_check Ansible module (run {run_id},"
            f" case {index} of {len(specs)}: {name}). Expected receivers: {receivers}."
            " It is resolved when the test ends; no action needed."
        )
        case = Case(
            index, name, spec, case_id, alert(spec["labels"], case_id, f"Smoke test {case_id}: {name}", description)
        )
        for source_number, source_labels in enumerate(spec.get("inhibited_by") or [], start=1):
            source_id = f"{run_id}-src{source_number}-{number}"
            description = (
                f"Synthetic alert {source_id} posted by the alertmanager_routing_check Ansible module (run"
                f" {run_id}) to check that it inhibits the alert of case {index} ({name})."
                " It is resolved when the test ends; no action needed."
                # Never the case id here: the sink finds a case's notifications by its id.
            )
            summary = f"Smoke test {source_id}: inhibiting source {source_number} of {name}"
            case.sources.append(SourceAlert(case, source_id, alert(source_labels, source_id, summary, description)))
        cases.append(case)
    return cases


# ---------------------------------------------------------------------- table
def _expected_cell(case):
    cell = join(case.expected)
    if case.expected_inhibited is not None:
        cell += " [inhibited]" if case.expected_inhibited else " [not inhibited]"
    return cell


def _routed_cell(case):
    if not case.routed_per_am:
        return "-"
    if len({tuple(names) for names in case.routed_per_am.values()}) == 1:
        cell = join(case.routed)
    else:
        cell = "; ".join(f"{url}: {join(names)}" for url, names in case.routed_per_am.items())
    count = sum(1 for inhibited in case.inhibited_per_am.values() if inhibited)
    if 0 < count < len(case.inhibited_per_am):
        cell += f" [inhibited on {count} of {len(case.inhibited_per_am)} Alertmanagers]"
    elif case.isolated or count:
        cell += " [inhibited]" if count else " [not inhibited]"
    return cell


def _delivered_cell(case):
    if case.delivered_to is None:
        return "-"
    return join(case.delivered_to) if case.delivered_to else "nobody"


def _result_cell(case):
    if case.ok:
        return "ok"
    if case.matched is None and not case.problems:
        return "not run"
    return "FAIL"


def render_table(cases, planned=False):
    """Plain-text table with the columns case, expected, routed, delivered, result."""
    rows = [("case", "expected", "routed", "delivered", "result")]
    for case in cases:
        if planned:
            rows.append((case.name, _expected_cell(case), "-", "-", f"planned: {case.id}"))
        else:
            rows.append(
                (case.name, _expected_cell(case), _routed_cell(case), _delivered_cell(case), _result_cell(case))
            )
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join([cell.ljust(widths[col]) for col, cell in enumerate(row[:4])] + [row[4]]))
        if number == 0:
            lines.append("  ".join(["-" * width for width in widths] + ["-" * 6]))
    return "\n".join(lines)


# ---------------------------------------------------------------------- report
def report(cases, fleet, run_id, planned=False):
    """The module's return values but changed and msg; ``fleet`` is the run's alertmanager_fleet.Fleet."""
    return dict(
        run_id=run_id,
        smoke_label=fleet.smoke_label,
        posted=len(fleet.posted),
        alertmanagers=fleet.alertmanagers,
        cases=[case.result() for case in cases],
        failed_cases=[] if planned else [c.name for c in cases if c.matched is not None and not c.ok],
        table=render_table(cases, planned=planned),
    )


def outcome(cases, fleet, run_id, resolve, error=None):
    """(failed, return values with msg) of a finished run; ``error`` is what stopped it."""
    result = report(cases, fleet, run_id)
    table, posted, smoke_label = result["table"], result["posted"], result["smoke_label"]
    if fleet.errors:
        cleanup = "\nCleanup problems (the alerts end by themselves at endsAt, 1 h after posting):\n- "
        cleanup += "\n- ".join(fleet.errors)
    elif posted and resolve:
        cleanup = f"\nAll {posted} posted alert(s) were resolved."
    else:
        cleanup = ""
    failed = [case for case in cases if not case.ok]
    degraded = fleet.degraded()
    if error:
        error = f"{degraded} {error}" if degraded else error
        return True, dict(result, msg=f"{error}\n{table}{cleanup}", error=error)
    if failed:
        details = "\n".join(f"- {case.name}: {'; '.join(case.problems)}" for case in failed)
        msg = (
            (f"{degraded}\n" if degraded else "")
            + f"{len(failed)} of {len(cases)} smoke test case(s) failed (run {run_id},"
            f" {smoke_label}={run_id}-*):\n{table}\n{details}{cleanup}"
        )
        return True, dict(result, msg=msg)
    if fleet.errors:
        return True, dict(result, msg=f"all {len(cases)} case(s) passed, but cleaning up failed:\n{table}{cleanup}")
    degraded = fleet.degraded()
    if degraded:
        return True, dict(result, msg=f"{degraded} All {len(cases)} case(s) passed there.\n{table}{cleanup}")
    msg = f"{len(cases)} smoke test case(s) passed through {len(fleet.active)} Alertmanager(s) (run {run_id})"
    if fleet.lost:
        msg += f"; lost during the run (max_unavailable={fleet.max_unavailable}): {fleet.lost_text()}"
    return False, dict(result, msg=msg)
