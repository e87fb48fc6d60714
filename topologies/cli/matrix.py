"""``nslab matrix``: the selected lab tests on several kernels, one table."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import LabError
from ..kernels import images, vm
from ..kernels.matrix import REPO, closing_line, render, run_matrix, save, summary
from ..report import html as report_html
from .checks import check_expression, check_jobs, check_results_dir


def check_selection(selection: list[str]) -> None:
    """The ``-k``/``-m`` expressions of a pytest selection parse (one line if not)."""
    for i, arg in enumerate(selection):
        for option in ("-k", "-m"):
            if arg == option and i + 1 < len(selection):
                check_expression(option, selection[i + 1])
            elif arg.startswith(option) and len(arg) > 2:
                check_expression(option, arg[2:])


def cmd_matrix(args) -> int:
    vm.handle_signals()
    specs = list(args.kernel or [])
    if args.kernels_file:
        specs += images.read_list(args.kernels_file)
    if args.list:
        for spec in specs:
            print(spec)
        return 0
    # Every bad input answered before BPF is built, bytecode warmed or a directory made.
    if not specs:
        raise LabError("no kernel given (--kernel host, --kernel deb:6.12.117, ...)")
    images.check_specs(specs)
    check_selection(args.selection)
    if args.jobs != "fit":
        check_jobs(args.jobs)
    if args.timeout <= 0:
        raise LabError(f"--timeout {args.timeout:g}: seconds per kernel, more than 0")
    directory = Path(args.results or REPO / "results" / time.strftime("matrix-%Y%m%d-%H%M%S"))
    directory = Path(check_results_dir(str(directory.resolve())))
    directory.mkdir(parents=True, exist_ok=True)
    progress = vm.printer()
    results = run_matrix(specs, args.selection, directory, timeout=args.timeout,
                         jobs=args.jobs, cpus=args.cpus, memory=args.memory, progress=progress)
    for result in results:
        result.no_skips = args.no_skips
    table = render(results, only_differences=args.only_differences)
    save(results, directory, render(results))
    report_html.write(html_page(results), str(directory / "report.html"))
    print("\n" + table)
    print(f"\nnslab matrix: results in {directory}")
    print(closing_line(results))
    return 0 if all(r.ok for r in results) else 1


def html_page(results) -> report_html.Page:
    """The matrix as a page: a heat map of tests × kernels, and each kernel's run."""
    kernels = [r.kernel.name for r in results]
    tests = sorted({t for r in results for t in r.outcomes})
    cells = {(t, r.kernel.name): o.status for r in results for t, o in r.outcomes.items()}
    per_kernel = dict(line.split(": ", 1) for line in summary(results).splitlines()
                      if not line.startswith("    "))
    return report_html.Page(f"nslab matrix — {len(kernels)} kernels, {len(tests)} tests",
                            per_kernel, matrix=report_html.Heatmap(kernels, tests, cells))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "matrix", help="run lab tests on several kernels (VMs) and print test x kernel",
        description="Run the selected lab tests on each kernel (host, deb:<version>, or a "
                    "kernel image path) and print one table test x kernel.")
    p.add_argument("--kernel", action="append", metavar="SPEC",
                   help="host | deb:<version> | IMAGE[,modules=DIR] (repeatable)")
    p.add_argument("--kernels-file", metavar="FILE", help="kernel specs, one per line")
    p.add_argument("--list", action="store_true", help="only print the kernel specs")
    p.add_argument("-n", "--jobs", default="fit",
                   help="pytest-xdist workers per kernel (default fit: 2 for more than 100 "
                        "tests, else none: each worker costs ~20 s of imports under TCG)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per kernel (default 3600)")
    p.add_argument("--cpus", type=int, default=2, help="vCPUs per VM (default 2)")
    p.add_argument("--memory", default="2G", help="memory per VM (default 2G)")
    p.add_argument("--results", metavar="DIR", help="results directory")
    p.add_argument("--no-skips", action="store_true",
                   help="a skipped test fails its kernel (for selections that must really run)")
    p.add_argument("--only-differences", action="store_true",
                   help="print only tests whose outcome differs between kernels")
    p.add_argument("selection", nargs=argparse.REMAINDER,
                   help="pytest selection (files, ids, -k/-m ...; default: "
                        "labtests -m 'lab and not vm': the tests that touch the kernel)")
    p.set_defaults(func=cmd_matrix, needs_root=True)
