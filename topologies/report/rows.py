"""Scenario tables: each lab test leaves one row (knobs → verdict and evidence),
and ``nslab run`` prints them per scenario.

A row is written to ``$NSLAB_RESULTS/rows/`` only when a results directory is
set (``nslab run`` sets it), with the test's outcome filled in by pytest.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict, dataclass, field

RESULTS_ENV = "NSLAB_RESULTS"


@dataclass
class Row:
    scenario: str
    test: str
    knobs: dict = field(default_factory=dict)      # column → value, in display order
    evidence: dict = field(default_factory=dict)   # column → short text
    outcome: str = ""                              # passed / failed / xfail / XPASS / skipped
    known_bug: str = ""


def results_dir():
    return os.environ.get(RESULTS_ENV)


def write(row: Row, directory: str) -> str:
    rows = os.path.join(directory, "rows")
    os.makedirs(rows, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_.[]=" else "_" for c in row.test)[:200]
    path = os.path.join(rows, f"{row.scenario}--{name}.json")
    with open(path, "w") as f:
        json.dump(asdict(row), f, indent=1)
    return path


def load(directory: str) -> list[Row]:
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "rows", "*.json"))):
        with open(path) as f:
            rows.append(Row(**json.load(f)))
    return rows


def _table(headers: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def render(rows: list[Row]) -> str:
    """One table per scenario: knob columns, evidence columns, outcome."""
    parts = []
    for scenario in sorted({r.scenario for r in rows}):
        mine = [r for r in rows if r.scenario == scenario]
        knobs = list(dict.fromkeys(k for r in mine for k in r.knobs))
        evidence = list(dict.fromkeys(k for r in mine for k in r.evidence))
        headers = knobs + evidence + ["outcome"]
        lines = [[str(r.knobs.get(k, "")) for k in knobs] +
                 [str(r.evidence.get(k, "")) for k in evidence] +
                 [r.outcome + (f" ({r.known_bug})" if r.known_bug else "")]
                 for r in sorted(mine, key=lambda r: [str(r.knobs.get(k, "")) for k in knobs])]
        parts.append(f"== {scenario} ({len(mine)} rows)\n" + _table(headers, lines))
    return "\n\n".join(parts)
