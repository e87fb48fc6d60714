"""Scenario tables: each lab test leaves one row (knobs → verdict and evidence),
and ``nslab run`` prints them per scenario.

A row is written to ``$NSLAB_RESULTS/rows/`` only when a results directory is
set (``nslab run`` sets it), with the test's outcome filled in by pytest.
"""
from __future__ import annotations

import glob
import json
import os
import textwrap
from dataclasses import asdict, dataclass, field

RESULTS_ENV = "NSLAB_RESULTS"


# What a test's outcome says about the variant (the row's last column).
EXPECTATION = {"passed": "as expected", "xfail": "as expected", "failed": "UNEXPECTED",
               "error": "UNEXPECTED", "XPASS": "UNEXPECTED (known bug did not show)",
               "skipped": "not run"}
LEGEND = ("datapath: what the datapath did (correct; BROKEN: the first wrong checksum's layer, "
          "field, wire and correct values; or a known kernel bug). expected?: whether that is "
          "what the variant was built to do (a known-bad variant that is BROKEN is as expected).")
WIDE = 32          # cells longer than this become a numbered key under the table


@dataclass
class Row:
    scenario: str
    test: str
    knobs: dict = field(default_factory=dict)      # column → value, in display order
    evidence: dict = field(default_factory=dict)   # column → short text
    outcome: str = ""                              # passed / failed / xfail / XPASS / skipped
    known_bug: str = ""
    wire: str = ""          # what the lab's captures saw: "correct" or "BROKEN: ..."
    check: bool = False     # a test of the scenario that reported no row of its own

    def datapath(self) -> str:
        if self.known_bug and self.outcome == "xfail":
            return f"known kernel bug {self.known_bug}"
        return self.wire or "-"

    def expectation(self) -> str:
        return EXPECTATION.get(self.outcome, self.outcome or "-")


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
    out = [line.rstrip() for line in out]
    return "\n".join(out)


def columns(rows: list[Row]) -> tuple[list[str], list[str]]:
    """The knob and evidence columns of ``rows``, in first-seen order."""
    return (list(dict.fromkeys(k for r in rows for k in r.knobs)),
            list(dict.fromkeys(k for r in rows for k in r.evidence)))


COLUMNS = 120      # what a table may take, a terminal's or a CI log's width
NARROWEST = 10     # cells and headers are never abbreviated below this


def _width(headers: list[str], lines: list[list[str]]) -> int:
    return sum(max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(headers)) \
        + 2 * (len(headers) - 1)


def _fitted(headers: list[str], lines: list[list[str]]) -> tuple[list[str], list[list[str]],
                                                                 list[str]]:
    """Headers, cells and a key that fit COLUMNS. Cells longer than WIDE go to the key
    (``[n]``); then, widest column first, the long cells of one column at a time; then
    long headers are cut. The last column (expected?) is never abbreviated."""
    key: dict[str, str] = {}

    def abbreviate(column: int, longer_than: int) -> None:
        for line in lines:
            if len(line[column]) > longer_than:
                line[column] = key.setdefault(line[column], f"[{len(key) + 1}]")

    lines = [list(line) for line in lines]
    for column in range(len(headers) - 1):
        abbreviate(column, WIDE)
    while _width(headers, lines) > COLUMNS:
        room = {c: max(len(line[c]) for line in lines) for c in range(len(headers) - 1)
                if max(len(line[c]) for line in lines) > max(len(headers[c]), NARROWEST)}
        if not room:
            break
        widest = max(room, key=room.get)
        abbreviate(widest, max(len(headers[widest]), NARROWEST))
    notes = [f"  {ref} {text}" for text, ref in key.items()]
    if _width(headers, lines) > COLUMNS:
        cut = [h if len(h) <= NARROWEST else h[:NARROWEST - 1] + "~" for h in headers]
        notes += [f"  {c} = {h}" for c, h in zip(cut, headers) if c != h]
        headers = cut
    return headers, lines, notes


def render(rows: list[Row]) -> str:
    """One table per scenario: the knobs that vary, the evidence, what the datapath
    did and whether it was expected; knobs equal in every row go to the title
    line, long cells to a key, a legend under each table."""
    parts = []
    for scenario in sorted({r.scenario for r in rows}):
        everything = sorted((r for r in rows if r.scenario == scenario),
                            key=lambda r: [str(v) for v in r.knobs.values()])
        mine = [r for r in everything if not r.check] or everything[:0]
        checked = [r for r in everything if r.check]
        if not mine:
            parts.append("\n".join([f"== {scenario}", f"checks of {scenario}:"] + [
                f"  {r.knobs['check']}: {r.expectation()}" for r in checked]))
            continue
        knobs, evidence = columns(mine)
        same = {k: mine[0].knobs.get(k) for k in knobs
                if len({str(r.knobs.get(k, "")) for r in mine}) == 1}
        varying = [k for k in knobs if k not in same]
        headers = varying + evidence + ["datapath", "expected?"]
        lines = [[str(r.knobs.get(k, "")) for k in varying] +
                 [str(r.evidence.get(k, "")) for k in evidence] + [r.datapath(), r.expectation()]
                 for r in mine]
        headers, lines, key = _fitted(headers, lines)
        title = f"== {scenario} ({len(mine)} rows)" + (
            "; every row: " + ", ".join(f"{k}={v}" for k, v in same.items()) if same else "")
        checks = [f"  {r.knobs['check']}: {r.expectation()}"
                  + (f" ({r.datapath()})" if r.datapath() != "-" else "") for r in checked]
        parts.append("\n".join([title, _table(headers, lines), *key,
                                *textwrap.wrap(LEGEND, COLUMNS)]
                               + ([f"checks of {scenario}:"] + checks if checks else [])))
    return "\n\n".join(parts)
