"""Bad command-line input, answered in one line (a ``LabError``, exit 2) before
anything is created: shared by the commands, and light to import (a lab command
must not pay for the report or VM code to check a file name)."""
from __future__ import annotations

import os
import re

from ..errors import LabError


def check_expression(option: str, text: str) -> str:
    """A pytest ``-k``/``-m`` expression that parses, else a one-line LabError (pytest
    itself would answer a bad one with pages of xdist INTERNALERROR)."""
    from _pytest.mark.expression import Expression
    try:
        Expression.compile(text)
    except Exception as exc:   # SyntaxError (pytest >= 8.4), ParseError before
        where = getattr(exc, "offset", None) or getattr(exc, "column", None)
        why = getattr(exc, "msg", None) or getattr(exc, "message", None) or str(exc)
        raise LabError(f"bad {option} expression {text!r}"
                       f"{f' at column {where}' if where else ''}: {why}") from None
    return text


def check_jobs(jobs: str) -> str:
    if not re.fullmatch(r"auto|logical|\d+", str(jobs)):
        raise LabError(f"-n {jobs!r}: a number of workers, auto or logical")
    return jobs


def check_output_file(option: str, path: str) -> str:
    where = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(where):
        raise LabError(f"{option} {path}: no directory {where}")
    if os.path.isdir(path):
        raise LabError(f"{option} {path}: is a directory")
    return path


def check_results_dir(path: str) -> str:
    if os.path.exists(path) and not os.path.isdir(path):
        raise LabError(f"--results {path}: exists and is not a directory")
    return path
