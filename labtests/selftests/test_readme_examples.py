"""The README's examples run as written: every fenced block whose first line names a
file (``# test_x.py``, ``# lab.yaml``) is written out, and the tests among them run
in a pytest session of their own with nothing but the installed plugin."""
import re
import subprocess
import sys

from topologies.paths import PROJECT_ROOT

BLOCK = re.compile(r"```(?:python|yaml)\n# ([\w.]+\.(?:py|yaml))\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return {name: body for name, body in BLOCK.findall((PROJECT_ROOT / "README.md").read_text())}


def test_the_readme_has_its_examples():
    assert {"test_udp.py", "test_own_program.py", "lab.yaml", "test_routed.py"} <= set(examples())


def test_the_readme_examples_pass(root_required, tmp_path):
    for name, body in examples().items():
        (tmp_path / name).write_text(body)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "3 passed" in run.stdout, run.stdout[-1000:]
