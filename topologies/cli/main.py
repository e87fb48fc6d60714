"""The ``nslab`` command."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional

from ..errors import LabError


def cmd_doctor(args) -> int:
    from . import doctor
    checks = doctor.run_checks()
    print(doctor.report(checks))
    missing = doctor.essential_missing(checks)
    if missing:
        print(f"\nnslab doctor: missing essentials: {', '.join(c.name for c in missing)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_sweep(args) -> int:
    from ..lab import sweep
    if args.dry_run:
        for record, why in sweep.orphans():
            print(f"would remove {record.prefix} ({why})")
        return 0
    removed = sweep.sweep()
    for swept in removed:
        print(f"removed {swept.describe()}")
    if not removed:
        print("nothing to sweep")
    return 0


class Parser(argparse.ArgumentParser):
    """Bad input: one line on stderr and exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# Modules that add their own subcommands (each has ``register(subparsers)``), with the
# commands each adds. A command imports only its own module: ``nslab ls`` or ``nslab
# down`` (run by the dozen in scripts and tests) pays for no report or VM code.
# ``nslab --help`` and an unknown command import them all.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "topologies.cli.run": ("run",),
    "topologies.cli.lab_commands": ("up", "ls", "exec", "down", "capture"),
    "topologies.cli.matrix": ("matrix",),
    "topologies.cli.bisect": ("bisect",),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``nslab`` parser; given a known ``command``, only that command's module is
    imported (the other modules' subcommands are left out)."""
    parser = Parser(prog="nslab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)

    p = sub.add_parser("doctor", help="check root, kernel features and tools")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("sweep", help="remove labs whose owner process died")
    p.add_argument("--dry-run", action="store_true", help="only list them")
    p.set_defaults(func=cmd_sweep, needs_root=True)

    known = command in sub.choices or any(command in c for c in COMMAND_MODULES.values())
    for module, commands in COMMAND_MODULES.items():
        if not known or command in commands:
            importlib.import_module(module).register(sub)
    return parser


def not_root(command: str) -> str:
    """The one line for a command that needs root run without it, or ""."""
    from .doctor import ROOT_CAPS, missing_caps
    caps, missing = " + ".join(ROOT_CAPS), missing_caps(ROOT_CAPS)
    if os.geteuid() != 0:
        return f"nslab {command}: needs root ({caps})"
    if missing:
        return f"nslab {command}: needs root with {caps} (missing {', '.join(missing)})"
    return ""


def _stdout_gone() -> int:
    """The reader of our output went away (``nslab ls | head -1``): no traceback,
    and no second error when Python flushes stdout at exit (the Python docs' recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141    # as if killed by SIGPIPE, what a shell reports for such a writer


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    refusal = not_root(args.command) if getattr(args, "needs_root", False) else ""
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except LabError as exc:
        print(f"nslab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nslab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
