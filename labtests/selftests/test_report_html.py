"""report.html is one self-contained page a browser renders: no network, no script
errors, not blank — checked in Debian's headless Chromium."""
import re
import shutil
import subprocess

import pytest

from topologies.report import html, rows

CHROMIUM = shutil.which("chromium")
ROWS = [
    rows.Row("lb_snat", "labtests/test_lb_snat.py::t[fixed]", {"variant": "fixed"},
             {"upload": "1.2 MiB/s"}, "passed", wire="correct"),
    rows.Row("lb_snat", "labtests/test_lb_snat.py::t[prefix]", {"variant": "prefix"},
             {"upload": "stalled"}, "passed",
             wire="BROKEN: ICMP chksum wire=0x788e correct=0xcbe5"),
    rows.Row("vxlan_overlay", "labtests/test_vxlan_overlay.py::t[x]", {"nat": "masq"},
             {}, "xfail", known_bug="vxlan-lco-nat-sport"),
]
PAGE = html.Page("nslab run — test page", {"kernel": "6.18"}, ROWS,
                 [html.Failure("labtests/test_x.py::t", "INVALID UDP chksum", "artifacts/t",
                               ["0-server-eth0.pcapng"])],
                 html.Heatmap(["6.1", "6.12"], ["t1", "t2"],
                              {("t1", "6.1"): "passed", ("t2", "6.12"): "xfail"}))


def test_the_page_says_what_each_row_means():
    text = html.render(PAGE)
    assert "BROKEN: ICMP chksum wire=0x788e correct=0xcbe5" in text
    assert "known kernel bug vxlan-lco-nat-sport" in text and "as expected" in text
    assert '<a href="artifacts/t/0-server-eth0.pcapng">' in text
    assert "<svg" in text and "t2 on 6.12: xfail" in text
    assert "<h2>Known bugs</h2>" in text and "<h2>Kernel behaviour</h2>" in text
    # Self-contained: nothing loaded from anywhere (links a reader may follow are fine).
    assert not re.search(r"<script|<link|<img|src=|url\(", text)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                             "(ci/setup.sh installs it)")
def test_chromium_renders_it_without_errors_and_not_blank(tmp_path):
    from PIL import Image
    page = html.write(PAGE, str(tmp_path / "report.html"))
    shot = tmp_path / "shot.png"
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                          "--window-size=1200,900", f"--screenshot={shot}", f"file://{page}"],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20, "the screenshot is blank"


def test_nslab_matrix_page_is_a_heat_map_of_tests_by_kernel(tmp_path):
    from topologies.cli.matrix import html_page
    from topologies.kernels import images, matrix, vm
    results = [matrix.KernelResult(images.parse("host"), vm.Run(
        kernel="host", results=tmp_path, state="completed", exit_code=0, release="6.18.44"),
        {"t.py::a": matrix.Outcome("passed"), "t.py::b": matrix.Outcome("xfail", "bug")})]
    text = html.render(html_page(results))
    assert "t.py::b on host: xfail" in text and "t.py::a on host: passed" in text
    assert "nslab matrix — 1 kernels, 2 tests" in text and "1 passed, 1 xfail" in text


def test_text_tables_fit_120_columns_and_keep_the_verdict_in_words():
    wide = [rows.Row("s", f"t[{i}]", {"variant": f"variant-{i}", "mode": "native"},
                     {f"evidence_column_{j}": f"a long piece of evidence number {i}.{j}"
                      for j in range(6)}, "passed" if i % 2 else "failed",
                     wire=f"BROKEN: ICMP chksum wire=0x{i:04x} correct=0xffff")
            for i in range(4)]
    text = rows.render(wide)
    table = text.split("\n\n")[0].splitlines()
    assert max(len(line) for line in table if not line.startswith("  [")) <= rows.COLUMNS
    assert text.count("datapath: what the datapath did") == 1          # the legend
    assert "every row: mode=native" in table[0]
    assert sum("UNEXPECTED" in line for line in table) == 2
    assert sum(line.rstrip().endswith("as expected") for line in table) == 2
    assert "  [1] " in text and "datapath: what the datapath did" in text
