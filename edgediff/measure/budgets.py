"""Latency budgets (device_tests/budgets.toml): limits per model/backend/device/precision, and a row's verdict.

Each `[[budget]]` table matches report rows with shell wildcards on `model`, `backend`, `device` and `precision`
(a missing key matches anything; case-insensitive) and sets any of the limits in LIMITS. The most specific matching
entry (fewest wildcards) wins, ties going to the earlier one; a row no entry matches is recorded only.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import InputError

KEYS = ("model", "backend", "device", "precision")
LIMITS: dict[str, tuple[Callable[[dict], float | None], str]] = {  # name: (value of a row, "max" | "min")
    "ms_per_step_p50": (lambda r: r["step"]["p50"], "max"),
    "ms_per_step_p90": (lambda r: r["step"]["p90"], "max"),
    "image_ms": (lambda r: r.get("image_ms"), "max"),
    "load_ms": (lambda r: r.get("load_ms"), "max"),
    "peak_rss_mb": (lambda r: r.get("peak_rss_mb"), "max"),
    "min_parity_db": (lambda r: r.get("parity_db"), "min"),
}
WITHIN, OVER, RECORD_ONLY = "within", "over", "record-only"


@dataclass(frozen=True)
class Budget:
    """One [[budget]] entry: wildcard patterns for the row keys and the limits that apply."""

    match: dict[str, str]
    limits: dict[str, float]
    index: int = 0

    @property
    def specificity(self) -> int:
        return sum(not any(c in p for c in "*?[") for p in self.match.values())

    def matches(self, row: dict) -> bool:
        return all(fnmatch.fnmatchcase(str(row.get(k)).lower(), p.lower()) for k, p in self.match.items())

    def describe(self) -> str:
        return " ".join(f"{k}={self.match.get(k, '*')}" for k in KEYS)


@dataclass(frozen=True)
class Check:
    """One limit applied to one row: the measured value (None: not measured), the limit, and whether it holds."""

    name: str
    value: float | None
    limit: float
    ok: bool


@dataclass(frozen=True)
class Verdict:
    """within (every measured limit holds), over (one does not) or record-only (no budget, nothing to check)."""

    status: str
    budget: Budget | None
    checks: tuple[Check, ...] = ()

    def text(self) -> str:
        if self.budget is None:
            return "record only: no budget matches this row"
        parts = [f"{c.name} {'–' if c.value is None else f'{c.value:.2f}'} {'≥' if LIMITS[c.name][1] == 'min' else '≤'}"
                 f" {c.limit:g}{'' if c.ok else ' FAILED'}" for c in self.checks]
        return f"{self.status} [{self.budget.describe()}]: " + ("; ".join(parts) or "no limits set")


def load(path: str | Path) -> list[Budget]:
    """Read and validate a budgets TOML file (InputError naming the file and entry on a mistake)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"cannot read budgets file {path} ({e})") from None
    return parse(data, str(path))


def parse(data: dict, source: str = "budgets") -> list[Budget]:
    """Budgets from parsed TOML: {'budget': [{model, backend, device, precision, <limits>}, ...]}."""
    unknown_top = sorted(set(data) - {"budget"})
    entries = data.get("budget", [])
    if unknown_top or not isinstance(entries, list):
        raise InputError(f"{source}: expected only [[budget]] tables, got {unknown_top or type(entries).__name__}")
    return [_entry(e, i, source) for i, e in enumerate(entries)]


def _entry(e: dict, i: int, source: str) -> Budget:
    where = f"{source}: [[budget]] #{i + 1}"
    unknown = sorted(set(e) - set(KEYS) - set(LIMITS))
    if unknown:
        raise InputError(f"{where} has unknown keys {unknown}; expected {list(KEYS)} and limits {list(LIMITS)}")
    match = {k: e[k] for k in KEYS if k in e}
    if not all(isinstance(v, str) and v for v in match.values()):
        raise InputError(f"{where}: {list(KEYS)} must be non-empty strings (wildcards * ? allowed)")
    limits = {k: e[k] for k in LIMITS if k in e}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in limits.values()):
        raise InputError(f"{where}: limits must be positive numbers, got {limits}")
    return Budget(match, {k: float(v) for k, v in limits.items()}, i)


def lookup(budgets: list[Budget], row: dict) -> Budget | None:
    """The most specific budget matching the row's model/backend/device/precision (earliest on ties), or None."""
    found = [b for b in budgets if b.matches(row)]
    return max(found, key=lambda b: (b.specificity, -b.index), default=None)


def verdict(row: dict, budgets: list[Budget]) -> Verdict:
    """Apply the matching budget's limits to a report row; a limit on an unmeasured value (None) is not held."""
    budget = lookup(budgets, row)
    if budget is None:
        return Verdict(RECORD_ONLY, None)
    checks = []
    for name, limit in budget.limits.items():
        get, kind = LIMITS[name]
        value = get(row)
        ok = value is None or (value >= limit if kind == "min" else value <= limit)
        checks.append(Check(name, None if value is None else float(value), limit, ok))
    if not any(c.value is not None for c in checks):
        return Verdict(RECORD_ONLY, budget, tuple(checks))
    return Verdict(WITHIN if all(c.ok for c in checks) else OVER, budget, tuple(checks))
