"""``nslab bisect``: which Debian kernel changed one test's outcome (see
:mod:`topologies.kernels.bisect` for the classification of each step)."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import LabError
from ..kernels import bisect as bisection
from ..kernels import images, matrix, vm
from ..kernels.bisect import DEFAULT_BAD_IF, DEFAULT_GOOD_IF, bisect, checker
from .checks import check_results_dir


def _outcomes(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in values if v not in matrix.STATUSES]
    if unknown:
        raise LabError(f"unknown outcome {', '.join(unknown)} "
                       f"(one of {', '.join(matrix.STATUSES)})")
    return values


def _deb_version(spec: str) -> str:
    kernel = images.parse(spec)
    if kernel.kind != "deb":
        raise LabError(f"bisect walks Debian versions: {spec} is not deb:<version> "
                       f"(for a kernel tree use git bisect run ci/git-bisect-run.sh)")
    return kernel.name


def _check_spec(spec: str) -> None:
    """``--check``'s kernel: any spec; a bare version means ``deb:`` (as in the checker)."""
    images.check_specs([spec if ":" in spec or "/" in spec or spec == images.HOST
                        else f"deb:{spec}"])


def _versions(args) -> list[str]:
    """The Debian versions to walk, from --good to --bad (both known, good older)."""
    if not (args.good and args.bad):
        raise LabError("bisect needs --good and --bad (or --check SPEC)")
    good, bad = _deb_version(args.good), _deb_version(args.bad)
    if images.version_key(good) >= images.version_key(bad):
        raise LabError(f"--good {good} must be older than --bad {bad}")
    images.check_specs([args.good, args.bad])
    return images.versions_between(good, bad, images.available_deb_versions())


def _test_file(test: str) -> None:
    path = test.split("::", 1)[0]
    if not (matrix.REPO / path).is_file():
        raise LabError(f"no test file {path} (a test id: labtests/test_x.py::test_y[param])")


def cmd_bisect(args) -> int:
    vm.handle_signals()
    good_if, bad_if = _outcomes(args.good_if), _outcomes(args.bad_if)
    if set(good_if) & set(bad_if):
        raise LabError(f"--good-if and --bad-if overlap: "
                       f"{', '.join(sorted(set(good_if) & set(bad_if)))}")
    # Every bad input answered before the prebuilt index is rewritten or a directory made.
    _test_file(args.test)
    if args.timeout <= 0:
        raise LabError(f"--timeout {args.timeout:g}: seconds per kernel, more than 0")
    if args.check:
        _check_spec(args.check)
    else:
        versions = _versions(args)
    directory = Path(args.results or matrix.REPO / "results" /
                     time.strftime("bisect-%Y%m%d-%H%M%S")).resolve()
    check_results_dir(str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    progress = vm.printer()
    matrix.prebuild_bpf(progress)                 # once on the host, not per boot
    matrix.warm_bytecode([args.test], progress)
    check = checker(args.test, directory, timeout=args.timeout, good_if=good_if,
                    bad_if=bad_if, progress=lambda m: progress(f"  {m}"))
    if args.check:
        step = check(args.check)
        print(f"{step.version}: {step.verdict} ({step.why})")
        return step.code
    with open(directory / "bisect.log", "w") as logfile:
        def log(line: str) -> None:
            progress(line)
            logfile.write(line + "\n")
            logfile.flush()
        log(f"bisect {args.test}: {len(versions)} versions {' '.join(versions)}; "
            f"good if {'/'.join(good_if)}, bad if {'/'.join(bad_if)}")
        result = bisect(versions, check, log)
        log(result.message)
    print(f"\nnslab bisect: {result.message}\nlog and results in {directory}")
    return result.exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bisect", help="find the first Debian kernel version where a test goes bad",
        description=bisection.__doc__.split("\n\n")[0])
    p.add_argument("--good", metavar="deb:VERSION", help="a version where the test is good")
    p.add_argument("--bad", metavar="deb:VERSION", help="a later version where it is bad")
    p.add_argument("--check", metavar="SPEC",
                   help="only test this kernel (any spec) and exit 0 good / 1 bad / 125")
    p.add_argument("--good-if", default=",".join(DEFAULT_GOOD_IF), metavar="OUTCOMES",
                   help="outcomes that count as good (default: passed,xfail)")
    p.add_argument("--bad-if", default=",".join(DEFAULT_BAD_IF), metavar="OUTCOMES",
                   help="outcomes that count as bad (default: failed,error,xpass)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per kernel (default 900)")
    p.add_argument("--results", metavar="DIR", help="results directory")
    p.add_argument("test", help="one test id, e.g. labtests/test_x.py::test_y[param]")
    p.set_defaults(func=cmd_bisect, needs_root=True)
