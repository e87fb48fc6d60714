"""The nslab command's contract: useful output, one-line errors, exit codes."""
import os
import secrets
import subprocess
import sys

import pytest

from topologies.lab import LAB_NAME_RULE, owner
from topologies.paths import PROJECT_ROOT

REPO = str(PROJECT_ROOT)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
NEEDS_ROOT = "needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN)"


def nslab(*args):
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["frobnicate"], ["sweep", "--bogus"], []],
                         ids=["unknown-command", "unknown-option", "no-command"])
def test_bad_input_is_one_line_and_exit_2(argv):
    result = nslab(*argv)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_doctor_reports_every_check_and_passes_here(root_required):
    result = nslab("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("root", "capabilities", "kernel", "vxlan", "netkit", "clsact", "tcx",
                 "xdp on veth", "BTF", "tracefs", "clang", "libbpf", "firewall tools",
                 "drop reasons"):
        assert f" {name} " in result.stdout, name
    # Whatever is missing comes with its fix.
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("ERR", "-- ")):
            assert lines[i + 1].strip().startswith("fix:"), line


def test_doctor_fails_without_root_essentials(tmp_path):
    """Run doctor as nobody: the essential checks fail and the exit is non-zero."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "topologies.cli", "doctor"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("ERR root")
    assert "missing essentials" in result.stderr


def as_nobody(tmp_path, *args):
    """``nslab ARGS`` really run unprivileged: uid/gid 65534, no capabilities."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    return subprocess.run([*NOBODY, sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HOME=str(tmp_path)))


def records_named(name):
    return [r for r in owner.all_records() if r.name == name]


@pytest.mark.parametrize("argv", [
    ["up", "vxlan_overlay"], ["down", "demo"], ["exec", "demo", "node_a", "--", "true"],
    ["capture", "demo", "node_b", "eth0"], ["run", "--scenario", "vxlan_overlay"], ["sweep"],
    ["matrix", "--kernel", "host"], ["bisect", "--check", "host", "labtests/test_lb_snat.py"],
], ids=lambda argv: argv[0])
def test_without_root_a_lab_command_says_so_in_one_line(tmp_path, argv):
    result = as_nobody(tmp_path, *argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"nslab {argv[0]}: {NEEDS_ROOT}\n"


def test_without_root_ls_help_and_doctor_still_answer(tmp_path):
    assert as_nobody(tmp_path, "ls").returncode == 0
    for argv in (["--help"], ["up", "--help"], ["run", "--help"]):
        result = as_nobody(tmp_path, *argv)
        assert result.returncode == 0 and result.stdout.startswith("usage: nslab"), argv
    assert as_nobody(tmp_path, "doctor").stdout.startswith("ERR root")


@pytest.mark.parametrize("name", ["a b", "x" * 300, "../../etc", "", "-rf"],
                         ids=["space", "300-characters", "path", "empty", "option-like"])
def test_a_bad_lab_name_is_one_line_exit_2_and_creates_nothing(root_required, name):
    """One rule for every name; --name '' is a bad name, not "use the default"."""
    result = nslab("up", "vxlan_overlay", f"--name={name}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and LAB_NAME_RULE in result.stderr, result.stderr
    if name:
        assert records_named(name) == []
    else:          # nor a lab under the default name (topology-pid)
        assert not [r for r in owner.all_records() if r.name.startswith("vxlan_overlay-")]
    down = nslab("down", "--", name)
    assert down.returncode == 2 and LAB_NAME_RULE in down.stderr


HOLD_TWO_NAMED = """
import sys
from topologies.lab import Lab
with Lab(name=sys.argv[1], topology="by-hand") as a, Lab(name=sys.argv[1], topology="by-hand") as b:
    a.add_node("a")
    print(a.prefix, b.prefix, flush=True)
    sys.stdin.read()
"""


def test_a_name_two_live_labs_carry_is_refused_with_their_prefixes(root_required):
    """Two test sessions can keep labs under one name: a command given that name
    must not pick one of them (``nslab down`` used to stop another session's)."""
    name = f"dup-{secrets.token_hex(4)}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_TWO_NAMED, name], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        prefixes = holder.stdout.readline().split()
        assert len(prefixes) == 2
        for argv in (["down", name], ["ls", name], ["exec", name, "a", "--", "true"],
                     ["capture", name, "a", "lo", "--seconds", "1"]):
            result = nslab(*argv)
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert all(prefix in result.stderr for prefix in prefixes), result.stderr
        # A prefix names exactly one lab; this one's owner is no keeper, so down refuses.
        assert nslab("ls", prefixes[0]).returncode == 0
        down = nslab("down", prefixes[0])
        assert down.returncode == 2 and "not a keeper" in down.stderr
        assert holder.poll() is None and len(records_named(name)) == 2
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert records_named(name) == []


def test_capture_works_on_a_lab_with_a_63_character_name(root_required):
    """The helper lab of a capture used to be named capture-<lab>: 71 characters."""
    name = f"c{secrets.token_hex(4)}".ljust(63, "x")
    up = nslab("up", "vxlan_overlay", "--name", name)
    try:
        assert up.returncode == 0, up.stderr
        capture = nslab("capture", name, "node_b", "eth0", "--seconds", "1")
        assert capture.returncode == 0, capture.stderr
        assert "frames; kernel dropped" in capture.stdout
    finally:
        assert nslab("down", name).returncode == 0


@pytest.mark.parametrize("argv, message", [
    (["matrix", "--kernel", "deb:0.0.0"], "kernel spec 'deb:0.0.0': no Debian kernel 0.0.0"),
    (["matrix", "--kernel", "nonsense"], "kernel spec 'nonsense' is not host"),
    (["matrix", "--kernel", "host", "--", "-k", "and or"], "bad -k expression 'and or'"),
    (["bisect", "--good", "deb:6.12.117", "--bad", "deb:6.1.0-47", "labtests/test_lb_snat.py"],
     "--good 6.12.117 must be older than --bad 6.1.0-47"),
    (["bisect", "--good", "deb:0.0.0", "--bad", "deb:0.0.1", "labtests/test_lb_snat.py"],
     "no Debian kernel 0.0.0"),
    (["bisect", "--good-if", "passed,skipped", "--bad-if", "skipped", "--check", "host",
      "labtests/test_lb_snat.py"], "--good-if and --bad-if overlap: skipped"),
    (["bisect", "--check", "host", "labtests/test_nope.py::test_x"], "no test file"),
], ids=["matrix-unknown-deb", "matrix-bad-spec", "matrix-bad-k", "bisect-reversed",
        "bisect-unknown-version", "bisect-overlap", "bisect-no-test"])
def test_bad_kernel_input_is_answered_before_anything_is_built(root_required, tmp_path,
                                                                argv, message):
    """Nothing printed but the error: no BPF prebuilt (its index rewritten), no
    bytecode warmed, no results directory."""
    results = tmp_path / "results"
    command, rest = argv[0], argv[1:]
    result = nslab(command, "--results", str(results), *rest)
    assert (result.returncode, result.stdout) == (2, ""), result.stdout[-2000:]
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not results.exists()


def test_a_closed_pipe_ends_quietly():
    """``nslab ls | head -1``: the reader goes away; no BrokenPipe traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "topologies.cli", "ls"], cwd=REPO,
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def test_each_command_module_adds_the_commands_the_table_says():
    """``COMMAND_MODULES`` decides which module a command imports: a module adding a
    command the table does not list would make that command unknown."""
    import argparse
    import importlib

    from topologies.cli.main import COMMAND_MODULES
    for module, commands in COMMAND_MODULES.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert tuple(sub.choices) == commands, module


LAB_COMMAND_IMPORTS = """
import sys
from topologies.cli.main import build_parser
build_parser(sys.argv[1]).parse_args(sys.argv[1:])
print(" ".join(m for m in sys.modules if m.split(".")[:2] in
      (["topologies", "report"], ["topologies", "kernels"], ["topologies", "bpf"])))
"""


@pytest.mark.parametrize("command", ["ls", "sweep"])
def test_a_lab_command_imports_no_report_vm_or_bpf_code(command):
    result = subprocess.run([sys.executable, "-c", LAB_COMMAND_IMPORTS, command], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stderr
