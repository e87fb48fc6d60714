"""``report.html``: one self-contained page (inline CSS and SVG, no script, no
network) that opens from a CI artifact — the summary, a table per scenario,
failures with their evidence and links to their captures, the known-bug and
kernel-behaviour tables, and for ``nslab matrix`` a heat map of tests × kernels.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..scenarios import kernel_behaviour, known_bugs
from .rows import Row, columns

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1f23;max-width:110em}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top} th{background:#f3f4f6} code{font-size:.95em}
.ok{background:#dcfce7} .bad{background:#fee2e2} .known{background:#fef9c3}
.skip{background:#e5e7eb} .xpass{background:#fbcfe8} .legend{color:#555;font-size:.9em}
.summary td{border:0;padding:0 1em 0 0}
"""
# outcome → (CSS class, heat-map colour, what it means for a reader)
OUTCOMES = {
    "passed": ("ok", "#22c55e", "as expected"),
    "failed": ("bad", "#ef4444", "UNEXPECTED: the test failed"),
    "error": ("bad", "#b91c1c", "UNEXPECTED: the test could not run to its end"),
    "xfail": ("known", "#eab308", "known kernel bug, as expected"),
    "xpass": ("xpass", "#ec4899", "UNEXPECTED: a known bug did not show (fixed?)"),
    "XPASS": ("xpass", "#ec4899", "UNEXPECTED: a known bug did not show (fixed?)"),
    "skipped": ("skip", "#9ca3af", "not run here (the reason is given)"),
    "not run": ("skip", "#e5e7eb", "not in this kernel's results"),
}


@dataclass
class Failure:
    test: str
    message: str
    artifacts: str = ""          # its directory, relative to the report
    captures: list[str] = field(default_factory=list)   # pcapng files in it


@dataclass
class Page:
    title: str
    summary: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    matrix: Optional["Heatmap"] = None


@dataclass
class Heatmap:
    kernels: list[str]
    tests: list[str]
    cells: dict[tuple[str, str], str]     # (test, kernel) → outcome


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _md_inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def markdown_table(text: str) -> str:
    """A pipe table (as the README shows the known-bug tables) as HTML."""
    lines = [line.strip().strip("|").split(" | ") for line in text.strip().splitlines()]
    head, body = lines[0], lines[2:]
    return ("<table><tr>" + "".join(f"<th>{_md_inline(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in row) + "</tr>"
                      for row in body) + "</table>")


def _scenario_table(rows: Sequence[Row]) -> str:
    knobs, evidence = columns(rows)
    head = knobs + evidence + ["datapath", "expected?"]
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        css = OUTCOMES.get(row.outcome, ("", "", ""))[0]
        cells = ([row.knobs.get(k, "") for k in knobs] + [row.evidence.get(k, "") for k in evidence]
                 + [row.datapath(), row.expectation()])
        out.append(f'<tr class="{css}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _legend() -> str:
    return ('<p class="legend">datapath: what the datapath did (<b>correct</b>, '
            '<b>BROKEN</b>: layer, field, wire and correct values, or a <b>known kernel '
            'bug</b>); expected?: whether that is what the variant was built to do. A known-bad '
            'variant that is BROKEN is <i>as expected</i>: the lab caught it.</p>')


def heatmap_svg(heatmap: Heatmap, cell: int = 14) -> str:
    """Tests × kernels as coloured cells, with a title per cell (hover)."""
    label_w = max(120, min(900, 7 * max((len(t) for t in heatmap.tests), default=10)))
    head_h = 8 * max((len(k) for k in heatmap.kernels), default=4) + 10
    width = label_w + cell * len(heatmap.kernels) + 10
    height = head_h + cell * len(heatmap.tests) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">']
    for j, kernel in enumerate(heatmap.kernels):
        x = label_w + j * cell + cell / 2
        out.append(f'<text x="{x}" y="{head_h - 4}" transform="rotate(-60 {x},{head_h - 4})">'
                   f'{_e(kernel)}</text>')
    for i, test in enumerate(heatmap.tests):
        y = head_h + i * cell
        out.append(f'<text x="{label_w - 4}" y="{y + cell - 3}" text-anchor="end">'
                   f'{_e(test[-120:])}</text>')
        for j, kernel in enumerate(heatmap.kernels):
            outcome = heatmap.cells.get((test, kernel), "not run")
            colour = OUTCOMES.get(outcome, ("", "#000", ""))[1]
            out.append(f'<rect x="{label_w + j * cell}" y="{y}" width="{cell - 1}" '
                       f'height="{cell - 1}" fill="{colour}"><title>{_e(test)} on {_e(kernel)}: '
                       f'{_e(outcome)}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def _heat_legend() -> str:
    return '<p class="legend">' + " ".join(
        f'<span style="background:{colour}">&nbsp;&nbsp;&nbsp;</span> {_e(name)}'
        for name, (_, colour, _) in OUTCOMES.items() if name != "XPASS") + "</p>"


def render(page: Page) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(page.title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{_e(page.title)}</h1>",
             '<table class="summary">' + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                                                for k, v in page.summary.items()) + "</table>"]
    if page.failures:
        parts.append("<h2>Failures</h2><ul>")
        for f in page.failures:
            link = (f' — <a href="{_e(f.artifacts)}/">artifacts</a> '
                    + " ".join(f'<a href="{_e(f.artifacts)}/{_e(p)}">{_e(p)}</a>'
                               for p in f.captures) if f.artifacts else "")
            parts.append(f"<li><code>{_e(f.test)}</code>: {_e(f.message)}{link}</li>")
        parts.append("</ul>")
    if page.matrix:
        parts += ["<h2>Tests × kernels</h2>", heatmap_svg(page.matrix), _heat_legend()]
    for scenario in sorted({r.scenario for r in page.rows}):
        mine = [r for r in page.rows if r.scenario == scenario and not r.check]
        checks = [r for r in page.rows if r.scenario == scenario and r.check]
        parts.append(f"<h2>{_e(scenario)} ({len(mine)} rows)</h2>")
        if mine:
            parts += [_scenario_table(mine), _legend()]
        if checks:
            parts.append(f"<p>Checks of {_e(scenario)}:</p><ul>" + "".join(
                f'<li class="{OUTCOMES.get(r.outcome, ("", "", ""))[0]}"><code>'
                f'{_e(r.knobs["check"])}</code>: {_e(r.expectation())}</li>' for r in checks)
                + "</ul>")
    parts += ["<h2>Known bugs</h2>", markdown_table(known_bugs.markdown_table()),
              "<h2>Kernel behaviour</h2>", markdown_table(kernel_behaviour.markdown_table()),
              "</body></html>"]
    return "\n".join(parts)


def write(page: Page, path: str) -> str:
    with open(path, "w") as f:
        f.write(render(page))
    return path
