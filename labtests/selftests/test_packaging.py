"""The wheel is the whole tool: library, scenarios (topology modules, BPF sources,
suites), the pytest plugin and the nslab command."""
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from topologies.paths import PACKAGE, PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_for_the_wheel():
    on_disk = {".".join(p.parent.relative_to(PROJECT_ROOT).parts)
               for p in PACKAGE.rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed - {"topologies.bundled.bpf", "topologies.bundled.labtests"} == on_disk


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools builds in the source tree (build/, *.egg-info), which a
    # concurrent session could be building too.
    source = out / "source"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "build", "*.egg-info", "__pycache__", ".hypothesis"))
    # Without build isolation (setuptools is a test dependency): what is checked is
    # the wheel's content; .ci/run builds it in isolation, as a user does.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(out), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    [path] = out.glob("nslab-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_carries_the_scenarios_and_the_plugin(wheel):
    names = set(wheel.namelist())
    for scenario in ("lb_snat", "pod_egress", "vxlan_overlay", "xdp_responder"):
        assert f"topologies/scenarios/{scenario}.py" in names
        assert f"topologies/bundled/labtests/test_{scenario}.py" in names
    for program in (PROJECT_ROOT / "bpf").glob("*.c"):
        assert f"topologies/bundled/bpf/{program.name}" in names
    assert "topologies/bundled/bpf/include/nslab_csum.h" in names
    assert "topologies/pytest_plugin.py" in names
    assert not [n for n in names if "selftests" in n]       # the tool's own tests stay home
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "nslab = topologies.pytest_plugin" in text and "nslab = topologies.cli:main" in text
