"""Kernel matrix and bisect: spec parsing, version order, the bisect search, the
JUnit → table path, the guest's exit-status contract, and (marked ``vm``) real
VM boots that run a lab test and survive a kernel panic."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from topologies import bpf, selection
from topologies.bpf import compiler, prebuilt
from topologies.errors import LabError
from topologies.kernels import bisect as bisect_mod
from topologies.kernels import images, matrix, vm
from topologies.paths import PROJECT_ROOT

REPO = PROJECT_ROOT
APT_NAMES = """linux-image-6.1.0-56-amd64-unsigned linux-image-6.1.0-47-amd64-unsigned
linux-image-6.1.0-50-cloud-amd64-unsigned linux-image-6.1.0-53-rt-amd64-unsigned
linux-image-6.1.0-53-amd64-unsigned linux-image-6.12.117+deb12-amd64-unsigned
linux-image-6.12.107+deb12-amd64-unsigned linux-image-6.12.111+deb12-cloud-amd64-unsigned
linux-image-amd64 linux-image-6.1.0-50-arm64-unsigned linux-image-6.12.111+deb12-amd64-unsigned
""".split()


# -- kernel specs --------------------------------------------------------------------------
@pytest.mark.parametrize("spec, kind, name, package", [
    ("host", "host", "host", ""),
    ("deb:6.1.0-56", "deb", "6.1.0-56", ""),
    ("deb:6.12.117", "deb", "6.12.117", ""),
    ("deb:linux-image-6.12.117+deb12-amd64-unsigned", "deb", "6.12.117",
     "linux-image-6.12.117+deb12-amd64-unsigned"),
], ids=["host", "deb-abi-version", "deb-upstream-version", "deb-package-name"])
def test_spec_parses_into_kind_and_name(spec, kind, name, package):
    kernel = images.parse(spec)
    assert (kernel.kind, kernel.name, kernel.package) == (kind, name, package)


@pytest.mark.parametrize("spec", ["deb:", "deb:six", "deb:6.1", "/no/such/bzImage",
                                  "kernel-6.1"], ids=lambda s: s or "empty")
def test_bad_spec_is_a_one_line_error(spec):
    with pytest.raises(LabError, match="kernel spec"):
        images.parse(spec)


def test_image_spec_takes_its_modules_dir(tmp_path):
    image, modules = tmp_path / "bzImage", tmp_path / "mods"
    image.write_bytes(b"\0")
    modules.mkdir()
    kernel = images.parse(f"{image},modules={modules}")
    assert (kernel.kind, kernel.image, kernel.modules) == ("path", image, modules)
    assert kernel.name == "bzImage"
    tree = tmp_path / "linux" / "arch" / "x86" / "boot"
    tree.mkdir(parents=True)
    (tree / "bzImage").write_bytes(b"\0")
    assert images.parse(str(tree / "bzImage")).name == "linux@bzImage"
    with pytest.raises(LabError, match="no modules directory"):
        images.parse(f"{image},modules={tmp_path / 'missing'}")
    with pytest.raises(LabError, match=r"IMAGE\[,modules=DIR\]"):
        images.parse(f"{image},mods={modules}")


def fake_bzimage(path: Path, release: str) -> Path:
    """The x86 boot header fields that carry the release string."""
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x600)          # kernel_version - 0x200
    text = f"{release} (builder@host) #1 SMP".encode() + b"\0"
    data[0x800:0x800 + len(text)] = text
    path.write_bytes(bytes(data))
    return path


def test_image_release_comes_from_the_boot_header(tmp_path):
    image = fake_bzimage(tmp_path / "bzImage", "6.13.0-rc1+")
    assert images.image_release(image) == "6.13.0-rc1+"
    (tmp_path / "elf").write_bytes(b"\x7fELF" + b"\0" * 0x300)
    with pytest.raises(LabError, match="not an x86 bzImage"):
        images.image_release(tmp_path / "elf")


def test_image_with_separate_modules_is_staged_where_virtme_looks(tmp_path):
    image = fake_bzimage(tmp_path / "bzImage", "6.13.0")
    (tmp_path / "mods").mkdir()
    kernel = images.prepare(images.parse(f"{image},modules={tmp_path / 'mods'}"),
                             cache=tmp_path / "cache")
    assert kernel.release == "6.13.0"
    assert kernel.image.name == "vmlinuz-6.13.0" and kernel.image.resolve() == image
    root = kernel.image.parent.parent
    assert (root / "lib/modules/6.13.0").resolve() == tmp_path / "mods"


def test_deb_versions_keep_only_this_arch_plain_flavour():
    assert images.deb_versions(APT_NAMES, arch="amd64") == {
        "6.1.0-56": "linux-image-6.1.0-56-amd64-unsigned",
        "6.1.0-47": "linux-image-6.1.0-47-amd64-unsigned",
        "6.1.0-53": "linux-image-6.1.0-53-amd64-unsigned",
        "6.12.117": "linux-image-6.12.117+deb12-amd64-unsigned",
        "6.12.107": "linux-image-6.12.107+deb12-amd64-unsigned",
        "6.12.111": "linux-image-6.12.111+deb12-amd64-unsigned",
    }


def test_versions_order_across_series():
    assert images.available_deb_versions(APT_NAMES) == [
        "6.1.0-47", "6.1.0-53", "6.1.0-56", "6.12.107", "6.12.111", "6.12.117"]
    assert images.sort_versions(["6.12.9", "6.12.10", "6.1.0-9", "6.1.0-10"]) == [
        "6.1.0-9", "6.1.0-10", "6.12.9", "6.12.10"]


def test_versions_between_include_both_ends():
    available = images.available_deb_versions(APT_NAMES)
    assert images.versions_between("6.1.0-53", "6.12.111", available) == [
        "6.1.0-53", "6.1.0-56", "6.12.107", "6.12.111"]
    with pytest.raises(LabError, match="must be older"):
        images.versions_between("6.12.111", "6.1.0-53", available)


def test_kernel_list_file_has_comments(tmp_path):
    listing = tmp_path / "kernels.txt"
    listing.write_text("# the matrix\nhost\n\ndeb:6.1.0-56   # oldest\ndeb:6.12.117\n")
    assert images.read_list(str(listing)) == ["host", "deb:6.1.0-56", "deb:6.12.117"]


def test_ci_kernel_list_parses():
    specs = images.read_list(str(REPO / "ci" / "kernels.txt"))
    assert specs and all(images.parse(s).kind in ("host", "deb") for s in specs)


# -- bisect ---------------------------------------------------------------------------------
VERSIONS = ["6.1.0-47", "6.1.0-50", "6.1.0-53", "6.1.0-54", "6.1.0-55", "6.1.0-56",
            "6.12.107", "6.12.111", "6.12.113", "6.12.115", "6.12.117"]


def fake_checker(first_bad: str, untestable=(), calls=None):
    """Good before ``first_bad``, bad from it on; ``untestable`` versions say 125."""
    def check(version):
        if calls is not None:
            calls.append(version)
        if version in untestable:
            return bisect_mod.Step(version, bisect_mod.SKIP, "guest no-boot")
        bad = VERSIONS.index(version) >= VERSIONS.index(first_bad)
        return bisect_mod.Step(version, bisect_mod.BAD if bad else bisect_mod.GOOD,
                               "failed" if bad else "passed")
    return check


@pytest.mark.parametrize("first_bad", VERSIONS[1:])
def test_bisect_finds_every_possible_boundary_in_log_steps(first_bad):
    calls = []
    result = bisect_mod.bisect(VERSIONS, fake_checker(first_bad, calls=calls), log=lambda _: None)
    assert (result.exit_code, result.first_bad) == (bisect_mod.GOOD, first_bad)
    assert result.last_good == VERSIONS[VERSIONS.index(first_bad) - 1]
    assert len(calls) == len(set(calls)) <= 2 + 4      # both ends + ceil(log2(9))


def test_bisect_steps_around_an_untestable_version():
    calls = []
    result = bisect_mod.bisect(VERSIONS, fake_checker("6.1.0-55", {"6.1.0-56"}, calls),
                               log=lambda _: None)
    assert (result.exit_code, result.first_bad) == (bisect_mod.GOOD, "6.1.0-55")
    assert "6.1.0-56" in calls          # the midpoint was tried, then stepped around


def test_bisect_reports_suspects_when_untestable_versions_hide_the_boundary():
    result = bisect_mod.bisect(
        VERSIONS, fake_checker("6.1.0-55", untestable={"6.1.0-54", "6.1.0-55"}),
        log=lambda _: None)
    assert result.exit_code == bisect_mod.SKIP and result.first_bad is None
    assert result.suspects == ["6.1.0-54", "6.1.0-55", "6.1.0-56"]


def good_everywhere(version):
    return bisect_mod.Step(version, bisect_mod.GOOD, "passed")


@pytest.mark.parametrize("check, code, message", [
    (fake_checker("6.1.0-47"), bisect_mod.BAD, "good version 6.1.0-47 is not good"),
    (fake_checker("6.1.0-50", untestable={"6.1.0-47"}), bisect_mod.SKIP,
     "good version 6.1.0-47 is not good"),
    (good_everywhere, bisect_mod.BAD, "bad version 6.12.117 is not bad"),
], ids=["good-end-is-bad", "good-end-untestable", "bad-end-is-good"])
def test_bisect_checks_its_endpoints_first(check, code, message):
    result = bisect_mod.bisect(VERSIONS, check, log=lambda _: None)
    assert result.exit_code == code and message in result.message
    assert result.first_bad is None


def finished_run(tmp_path, state="completed", started=True, detail=""):
    if started:
        (tmp_path / "started").touch()
    return vm.Run(kernel="6.12.117", results=tmp_path, state=state, exit_code=0, detail=detail)


@pytest.mark.parametrize("state, started, outcome, code", [
    ("completed", True, matrix.Outcome("passed"), bisect_mod.GOOD),
    ("completed", True, matrix.Outcome("xfail", "known bug"), bisect_mod.GOOD),
    ("completed", True, matrix.Outcome("failed", "assert 1 == 2"), bisect_mod.BAD),
    ("completed", True, matrix.Outcome("xpass", "known bug"), bisect_mod.BAD),
    ("completed", True, matrix.Outcome("skipped", "CONFIG_NETKIT"), bisect_mod.SKIP),
    ("completed", True, None, bisect_mod.SKIP),
    ("crashed", True, None, bisect_mod.BAD),
    ("timeout", True, None, bisect_mod.BAD),
    ("timeout", False, None, bisect_mod.SKIP),
    ("no-boot", False, None, bisect_mod.SKIP),
], ids=["passed", "xfail", "failed", "xpass", "skipped", "not-collected",
        "panic-in-test", "hang-in-test", "hang-at-boot", "no-boot"])
def test_step_classification_follows_git_bisect_run(tmp_path, state, started, outcome, code):
    run = finished_run(tmp_path, state, started)
    assert bisect_mod.classify(run, outcome)[0] == code


def test_custom_outcome_terms_turn_a_feature_appearing_into_a_boundary(tmp_path):
    run = finished_run(tmp_path)
    terms = dict(good_if=("skipped",), bad_if=("passed",))
    assert bisect_mod.classify(run, matrix.Outcome("skipped", "CONFIG_NETKIT"), **terms)[0] == 0
    assert bisect_mod.classify(run, matrix.Outcome("passed"), **terms)[0] == 1


# -- JUnit → table (real pytest output) ----------------------------------------------------
SAMPLE_TESTS = '''
import pytest

def test_passes():
    pass

def test_fails():
    assert 1 == 2

def test_skips():
    pytest.skip("kernel 6.1.0-56-amd64 has no netkit link kind (CONFIG_NETKIT not set)")

@pytest.mark.xfail(reason="known bug vxlan-lco-nat-sport", strict=True)
def test_known_bug():
    assert False

@pytest.mark.xfail(reason="known bug fixed-here", strict=True)
def test_fixed_bug():
    pass

@pytest.mark.parametrize("mode", ["l2", "l3"])
def test_param(mode):
    pass
'''


@pytest.fixture(scope="module")
def sample_junit(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    (root / "labtests").mkdir()
    (root / "labtests" / "test_sample.py").write_text(SAMPLE_TESTS)
    junit = root / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                    "-p", "no:xdist", "--rootdir", str(root), f"--junitxml={junit}",
                    "labtests/test_sample.py"], cwd=root, capture_output=True, timeout=120)
    return root, junit


def test_junit_outcomes_cover_every_status(sample_junit):
    root, junit = sample_junit
    outcomes = matrix.read_junit(junit, root)
    status = {t.split("::", 1)[1]: o.status for t, o in outcomes.items()}
    assert status == {"test_passes": "passed", "test_fails": "failed", "test_skips": "skipped",
                      "test_known_bug": "xfail", "test_fixed_bug": "xpass",
                      "test_param[l2]": "passed", "test_param[l3]": "passed"}
    assert all(t.startswith("labtests/test_sample.py::") for t in outcomes)
    assert "CONFIG_NETKIT" in outcomes["labtests/test_sample.py::test_skips"].reason
    assert outcomes["labtests/test_sample.py::test_known_bug"].reason == \
        "known bug vxlan-lco-nat-sport"


def kernel_result(name, outcomes, tmp_path, state="completed"):
    run = vm.Run(kernel=name, results=tmp_path, state=state, exit_code=0 if state ==
                 "completed" else None, seconds=12.0, boot_seconds=5.5)
    return matrix.KernelResult(images.Kernel(name, "deb", name), run, outcomes)


def test_table_is_test_by_kernel_with_reasons_as_notes(sample_junit, tmp_path):
    root, junit = sample_junit
    on_61 = matrix.read_junit(junit, root)
    on_612 = dict(on_61, **{"labtests/test_sample.py::test_skips": matrix.Outcome("passed")})
    text = matrix.render([kernel_result("6.1.0-56", on_61, tmp_path),
                          kernel_result("6.12.117", on_612, tmp_path)])
    lines = text.splitlines()
    assert lines[0].split() == ["test", "6.1.0-56", "6.12.117"]
    skip_row = next(line for line in lines if line.startswith("labtests/test_sample.py::test_skips"))
    assert skip_row.split()[1:] == ["skipped", "[3]", "passed"] or \
        skip_row.split()[1] == "skipped" and skip_row.split()[-1] == "passed"
    note = skip_row.split("[")[1].split("]")[0]
    assert f"[{note}] skipped: kernel 6.1.0-56-amd64 has no netkit" in text
    assert "6.1.0-56: not ok (pytest exit 0)" in text      # a failed test is not "ok"
    diff = matrix.render([kernel_result("6.1.0-56", on_61, tmp_path),
                          kernel_result("6.12.117", on_612, tmp_path)], only_differences=True)
    assert [l.split()[0] for l in diff.splitlines()[2:3]] == ["labtests/test_sample.py::test_skips"]


def test_a_kernel_that_never_finished_fails_the_matrix_with_its_console(tmp_path):
    dead = kernel_result("6.12.117", {}, tmp_path, state="crashed")
    dead.run.detail = "the guest stopped during the tests without an exit status"
    dead.run.console_tail = ["[ 41.0] Kernel panic - not syncing: sysrq triggered crash"]
    assert not dead.ok
    text = matrix.render([dead])
    assert "crashed" in text and "Kernel panic" in text


def test_selection_gets_workers_unless_it_sets_them():
    assert matrix.pytest_selection([], "2") == ["labtests", "-m", "lab and not vm", "-n", "2"]
    assert matrix.pytest_selection(["--", "labtests/test_bpf.py", "-k", "netkit"], "2") == \
        ["labtests/test_bpf.py", "-k", "netkit", "-n", "2"]
    assert matrix.pytest_selection(["labtests", "-n0"], "2") == ["labtests", "-n0"]
    assert matrix.pytest_selection(["labtests", "-n", "4"], "2") == ["labtests", "-n", "4"]


def test_fit_jobs_start_workers_only_for_a_long_selection():
    assert matrix.fitted_jobs("fit", matrix.FIT_MIN_TESTS + 1) == matrix.FIT_JOBS
    assert matrix.fitted_jobs("fit", 39) == "0"
    assert matrix.fitted_jobs("fit", 0) == "0"          # nothing counted: no workers
    assert matrix.fitted_jobs("4", 1) == "4"            # a number given is kept


def test_nested_pytest_leaves_out_the_plugins_of_modules_no_selected_file_imports(tmp_path):
    (tmp_path / "conftest.py").write_text("")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test_plain.py").write_text("import socket\n")
    (tmp_path / "t" / "test_prop.py").write_text("import os\nfrom hypothesis import given\n")
    (tmp_path / "t" / "test_inner.py").write_text(
        "def test_x():\n    from hypothesis import given\n")
    (tmp_path / "t" / "test_case.py").write_text("import unittest\n")
    no_unittest = ["-p", "no:unittest"]
    off = ["-p", "no:hypothesispytest", *no_unittest]
    assert selection.unused_plugins(["t/test_inner.py"], tmp_path) == off   # not at module level
    assert selection.unused_plugins(["t/test_plain.py::test_x[a-b]", "-n", "0"], tmp_path) == off
    assert selection.unused_plugins(["t/test_plain.py", "-k", "hypothesis"], tmp_path) == off
    assert selection.unused_plugins(["t/test_prop.py"], tmp_path) == no_unittest
    assert selection.unused_plugins(["t/test_case.py"], tmp_path) == ["-p", "no:hypothesispytest"]
    assert selection.unused_plugins(["t"], tmp_path) == []         # a directory: all its files
    (tmp_path / "conftest.py").write_text("import hypothesis\n")  # a conftest above counts
    assert selection.unused_plugins(["t/test_plain.py"], tmp_path) == no_unittest
    # This suite's own files, as the matrix step passes them.
    assert selection.unused_plugins(["labtests/test_vxlan_overlay.py"]) == off
    assert selection.unused_plugins(["labtests", "-m", "lab and not vm"]) == []


# -- the guest's contract, run on the host ---------------------------------------------------
@pytest.mark.parametrize("code", [0, 1, 3])
def test_guest_script_leaves_the_exit_status_as_a_file(tmp_path, code):
    script = tmp_path / "guest.sh"
    script.write_text(vm.guest_script(["sh", "-c", f"test -e {tmp_path}/started && exit {code}"],
                                      tmp_path, {"NSLAB_RESULTS": str(tmp_path)}))
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code
    assert (tmp_path / "exit-status").read_text().strip() == str(code)
    assert (tmp_path / "release").read_text().strip() == os.uname().release
    run = vm.Run(kernel="k", results=tmp_path, console_tail=proc.stdout.splitlines())
    vm.judge_guest(run)
    assert (run.state, run.exit_code) == ("completed", code)


@pytest.mark.parametrize("started, state", [(True, "crashed"), (False, "no-boot")])
def test_no_status_file_means_the_guest_died(tmp_path, started, state):
    run = finished_run(tmp_path, state="error", started=started)
    run.console_tail = ["[ 3.1] Kernel panic - not syncing: VFS: Unable to mount root fs"]
    vm.judge_guest(run)
    assert run.state == state and "Kernel panic" in run.detail and not run.completed


@pytest.mark.parametrize("line, total", [
    ("collected 158 items / 104 deselected / 54 selected", 54), ("collected 39 items", 39),
    ("collected 1 item", 1), ("2 workers [54 items]", 54)])
def test_progress_counts_the_selected_tests(tmp_path, line, total):
    with open(os.devnull, "w") as log:
        watcher = vm._Watcher(vm.Run(kernel="k", results=tmp_path), log, lambda _: None, 0.0)
        watcher.line(line + "\n")
    assert watcher.total == total


def test_watch_stops_a_hung_child_at_the_timeout(tmp_path):
    run = vm.Run(kernel="k", results=tmp_path)
    child = [sys.executable, "-c", "import time; print('nslab-guest: up x', flush=True); "
             "print('t.py::a PASSED [ 50%]', flush=True); print('FAILED t.py::b - x', flush=True); "
             "time.sleep(60)"]
    vm.watch(child, run, timeout=3, progress=lambda _: None)
    assert run.state == "timeout" and run.seconds < 30
    assert run.tests_done == 1 and run.boot_seconds is not None
    assert "t.py::a PASSED" in (tmp_path / "console.log").read_text()


def test_kvm_probe_wants_a_booting_kernel_not_just_a_running_vcpu(tmp_path):
    """SeaBIOS runs under this host's KVM, a kernel does not: only a kernel's first
    console line counts (a file that is no kernel never gets there)."""
    not_a_kernel = tmp_path / "bzImage"
    not_a_kernel.write_bytes(b"\0" * 4096)
    assert vm.probe_kvm(vm.qemu_binary(), not_a_kernel, seconds=2) is not None


def test_accel_can_be_forced(monkeypatch):
    monkeypatch.setenv(vm.ACCEL_ENV, "tcg")
    assert vm.accel().name == "tcg"
    monkeypatch.setenv(vm.ACCEL_ENV, "hvf")
    with pytest.raises(LabError, match="kvm or tcg"):
        vm.accel()


# -- prebuilt BPF objects ----------------------------------------------------------------
def test_prebuilt_manifest_serves_objects_without_clang(tmp_path, monkeypatch):
    built = bpf.prebuild(["bpf/core_probe.c"])
    manifest = prebuilt.write(built, tmp_path / "prebuilt.json")
    monkeypatch.setenv(prebuilt.MANIFEST_ENV, str(manifest))
    monkeypatch.setenv("NSLAB_CLANG", "/nonexistent/clang")      # a miss would fail loudly
    for result in built:
        again = compiler.build(result.source, defines=dict(result.defines))
        assert (again.path, again.digest, again.cache_hit) == (result.path, result.digest, True)
    with pytest.raises(LabError, match="clang not found"):
        compiler.build("bpf/core_probe.c", defines={"NSLAB_NOT_PREBUILT": 1})


# -- real VMs -----------------------------------------------------------------------------
VM_KERNEL = os.environ.get("NSLAB_VM_TEST_KERNEL", "deb:6.12.117")
# These VMs run next to the rest of the suite (another xdist worker): one vCPU at the
# lowest priority, so TCG does not starve the timing-sensitive lab tests.
BESIDE_THE_SUITE = {"cpus": 1, "nice": 19}


@pytest.fixture(scope="module")
def vm_kernel(root_required):
    try:
        vm.qemu_binary()
        vm.vng_binary()
        return images.prepare(images.parse(VM_KERNEL))
    except LabError as exc:
        pytest.skip(f"no VM here: {exc}")


@pytest.mark.vm
@pytest.mark.xdist_group("vm")
def test_netkit_lab_test_runs_in_a_vm_and_its_junit_comes_back(vm_kernel, tmp_path):
    test = "labtests/selftests/test_lab_core.py::test_netkit_pair_carries_traffic_in_l3_mode"
    matrix.prebuild_bpf(lambda _: None)
    run = vm.run_in_guest(vm_kernel, [test, "-n", "0"], tmp_path, timeout=600,
                          progress=lambda _: None, **BESIDE_THE_SUITE)
    assert run.completed, run.problem() + "\n" + "\n".join(run.console_tail)
    assert run.release == vm_kernel.release != os.uname().release
    outcomes = matrix.read_junit(tmp_path / "junit.xml")
    assert outcomes == {test: matrix.Outcome("passed")}, outcomes
    assert run.exit_code == 0 and run.boot_seconds and run.first_result_seconds


PANIC_TEST = """
def test_panics_the_kernel():
    with open("/proc/sysrq-trigger", "w") as f:
        f.write("c")
"""


@pytest.mark.vm
@pytest.mark.xdist_group("vm")
def test_a_kernel_panic_in_the_guest_is_a_crash_with_the_console(vm_kernel, tmp_path):
    tests = tmp_path / "panic"
    tests.mkdir()
    (tests / "test_panic.py").write_text(PANIC_TEST)
    run = vm.run_in_guest(vm_kernel, [str(tests / "test_panic.py"), "-p", "no:xdist",
                                      "--rootdir", str(tests)], tmp_path / "results",
                          timeout=600, progress=lambda _: None, **BESIDE_THE_SUITE)
    assert run.state == "crashed", run.detail
    assert "Kernel panic" in run.panic_line, run.console_tail
    assert "Kernel panic" in run.detail and run.console_tail


def test_no_skips_turns_a_skip_into_a_failed_kernel(tmp_path):
    result = kernel_result("6.12.117", {"t.py::netkit": matrix.Outcome("skipped", "CONFIG_NETKIT")},
                           tmp_path)
    assert result.ok
    result.no_skips = True
    assert not result.ok


def test_a_kernel_without_any_result_is_not_ok(tmp_path):
    assert not kernel_result("6.12.117", {}, tmp_path).ok


def test_ci_workflow_matrix_is_the_kernel_list():
    """The workflow's matrix is data copied from ci/kernels.txt: kept in step here."""
    lines = (REPO / "ci" / "github" / "nslab.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "kernel:")
    listed = []
    for line in lines[start + 1:]:
        if not line.strip().startswith("- "):
            break
        listed.append(line.strip()[2:].strip().strip('"'))
    assert listed == images.read_list(str(REPO / "ci" / "kernels.txt"))


def test_closing_line_counts_every_kernel(tmp_path):
    results = [kernel_result("6.1.0-56", {"a": matrix.Outcome("skipped", "netkit"),
                                          "b": matrix.Outcome("passed"),
                                          "c": matrix.Outcome("xpass", "fixed"),
                                          "d": matrix.Outcome("xfail", "known bug")}, tmp_path),
               kernel_result("6.12.117", {}, tmp_path, state="crashed")]
    assert matrix.closing_line(results) == "matrix: 1 passed, 1 xfail, 2 failed, 1 skipped"
    results[0].no_skips = True
    assert matrix.closing_line(results) == "matrix: 1 passed, 1 xfail, 3 failed, 0 skipped"
