"""What a run records: figures, their peers' samples per round, and the checks."""

import operator
import statistics
from dataclasses import dataclass, field

from .peers import Peer

OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str = "{:,.0f}"  # how a value of this metric is printed
    unit: str = ""

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def show(self, value: float | None) -> str:
        """The value with its unit, or a dash."""
        if value is None:
            return "—"
        return with_unit(self.fmt.format(value), self.unit)


def with_unit(number: str, unit: str) -> str:
    """A space between number and unit ("12 ms"), none before the multiplication sign."""
    if not unit:
        return number
    return f"{number}{unit}" if unit == "\N{MULTIPLICATION SIGN}" else f"{number} {unit}"


@dataclass
class Row:
    peer: Peer
    samples: dict[str, list[float]] = field(default_factory=dict)  # metric key -> per round
    not_measured: str | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: float) -> None:
        self.samples.setdefault(metric, []).append(float(value))

    def value(self, metric: str) -> float | None:
        values = self.samples.get(metric)
        return statistics.median(values) if values else None

    def fail(self, reason: str) -> None:
        """Record why a measurement of this peer failed (the first reason is kept)."""
        if self.not_measured is None:
            self.not_measured = reason
        note = f"failed: {reason}"
        if note not in self.notes:
            self.notes.append(note)

    @property
    def measured(self) -> bool:
        return any(self.samples.values())

    @property
    def shown_notes(self) -> list[str]:
        """Notes worth printing: a failure note only when the peer has values anyway."""
        if self.measured:
            return self.notes
        return [note for note in self.notes if not note.startswith("failed: ")]

    @property
    def missing(self) -> str | None:
        """Why this peer has no value at all, or None when it has one."""
        if self.measured:
            return None
        return self.not_measured or "no sample recorded"


@dataclass(frozen=True)
class Check:
    """A target: num (/ den) compared to `target`; without a target it is for reference."""

    label: str
    num: tuple[Peer, str]
    den: tuple[Peer, str] | None = None
    op: str = ">="
    target: float | None = None


@dataclass
class Figure:
    number: int
    title: str
    target_text: str  # the wording of the targets
    method: str  # how it is measured
    metrics: list[Metric]
    peers: list[Peer]
    checks: list[Check]
    rows: dict[str, Row] = field(default_factory=dict)

    def __post_init__(self):
        self.rows = {peer.key: Row(peer) for peer in self.peers}

    def metric(self, key: str) -> Metric:
        return next(m for m in self.metrics if m.key == key)

    def row(self, peer: Peer) -> Row:
        return self.rows[peer.key]

    def evaluate(self, check: Check) -> dict:
        """The check's value, whether it meets its target, or why it has no value."""
        parts = [check.num] + ([check.den] if check.den else [])
        values = []
        for peer, metric in parts:
            row = self.row(peer)
            value = row.value(metric)
            if value is None:
                reason = row.missing or f"{metric} not measured"
                return {"value": None, "ok": None, "not_measured": f"{peer.label}: {reason}"}
            values.append(value)
        if check.den:
            if values[1] == 0:
                return {"value": None, "ok": None, "not_measured": "division by zero"}
            value = values[0] / values[1]
        else:
            value = values[0]
        ok = OPS[check.op](value, check.target) if check.target is not None else None
        return {"value": value, "ok": ok, "not_measured": None}

    def to_json(self) -> dict:
        rows = []
        for row in self.rows.values():
            rows.append(
                {
                    "peer": row.peer.key,
                    "label": row.peer.label,
                    "values": {m.key: row.value(m.key) for m in self.metrics},
                    "samples": row.samples,
                    "measured": row.measured,
                    "not_measured": row.missing,
                    "notes": row.shown_notes,
                }
            )
        checks = []
        for check in self.checks:
            checks.append(
                {"label": check.label, "op": check.op, "target": check.target}
                | self.evaluate(check)
            )
        return {
            "figure": self.number,
            "title": self.title,
            "targets": self.target_text,
            "method": self.method,
            "metrics": [{"key": m.key, "label": m.label, "unit": m.unit} for m in self.metrics],
            "rows": rows,
            "checks": checks,
            # at least one peer measured / every peer measured
            "measured": any(row["measured"] for row in rows),
            "complete": all(row["measured"] for row in rows),
        }
