"""Bringing your own BPF program: found from the current directory, built with your
flags, warnings fatal only for nslab's own programs, a prebuilt object loaded as it
is, and errors that say where nslab looked and what clang said first."""
import os
import shutil

import pytest

from topologies import LabError, bpf
from topologies.bpf import compiler
from topologies.paths import BPF_SOURCES, PROJECT_ROOT

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")
ARTICLE = PROJECT_ROOT / "examples" / "own-datapath" / "bpf" / "xdp_echo.c"
WARNS = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mine.h"
SEC("xdp") int prog(struct xdp_md *ctx) { int unused; return VERDICT; }
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project of one's own: src/prog.c including include/mine.h; cwd there."""
    (tmp_path / "src").mkdir()
    (tmp_path / "include").mkdir()
    (tmp_path / "src" / "prog.c").write_text(WARNS)
    (tmp_path / "include" / "mine.h").write_text("#define VERDICT XDP_PASS\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_relative_path_is_taken_from_the_current_directory(project):
    built = bpf.build("src/prog.c", includes=["include"])
    assert built.source == project / "src" / "prog.c" and built.path.is_file()


def test_a_missing_source_says_every_place_it_looked(project):
    with pytest.raises(LabError) as caught:
        bpf.build("bpf/nope.c")
    assert str(caught.value) == (f"BPF source bpf/nope.c not found (looked at "
                                 f"{project / 'bpf' / 'nope.c'}, {BPF_SOURCES / 'nope.c'})")


def test_nslab_own_programs_are_found_from_anywhere(project):
    assert bpf.build("bpf/core_probe.c").source == (BPF_SOURCES / "core_probe.c").resolve()


def test_warnings_are_fatal_only_for_nslab_own_programs(project):
    assert "-Werror" not in compiler.compile_flags(project / "src" / "prog.c", ())
    assert "-Werror" in compiler.compile_flags(BPF_SOURCES / "core_probe.c", ())
    bpf.build("src/prog.c", includes=["include"])        # an unused variable: a warning only
    with pytest.raises(LabError, match="compiling .*prog.c failed: .*unused variable"):
        bpf.build("src/prog.c", includes=["include"], cflags=["-Werror"])


def test_a_clang_error_names_the_path_and_the_first_error(project):
    with pytest.raises(LabError) as caught:
        bpf.build("src/prog.c")                          # without include/: mine.h is missing
    assert f"{project / 'src' / 'prog.c'} failed:" in str(caught.value)
    assert "'mine.h' file not found" in str(caught.value)


def test_defines_and_cflags_are_part_of_the_cache_key(project):
    plain = bpf.build("src/prog.c", includes=["include"])
    assert bpf.build("src/prog.c", includes=["include"], defines={"X": 1}).digest != plain.digest
    assert bpf.build("src/prog.c", includes=["include"], cflags=["-O1"]).digest != plain.digest
    assert bpf.build("src/prog.c", includes=["include"]).cache_hit


def test_a_missing_include_directory_is_one_line(project):
    with pytest.raises(LabError, match=r"BPF include directory nowhere not found \(looked at "):
        bpf.build("src/prog.c", includes=["nowhere"])


@needs_root
def test_the_seed_article_program_builds_and_loads_unmodified(lab):
    """It includes <arpa/inet.h>: glibc headers under -target bpf (libc6-dev-i386)."""
    obj = bpf.load(lab, ARTICLE)
    assert obj.program("xdp_echo_reply").section == "xdp"
    assert obj.program("xdp") is obj.program("xdp_echo_reply")


@needs_root
def test_a_prebuilt_object_loads_as_it_is(lab, project):
    built = bpf.build("src/prog.c", includes=["include"])
    shutil.copy(built.path, project / "prog.o")
    obj = bpf.load(lab, "prog.o")
    assert obj.program("prog").type_name == "xdp"
    with pytest.raises(LabError, match="a prebuilt object takes no defines"):
        bpf.load(lab, "prog.o", defines={"X": 1})
    with pytest.raises(LabError, match=r"BPF object gone.o not found \(looked at "):
        bpf.load(lab, "gone.o")


@needs_root
def test_a_program_is_found_by_function_name_or_section_and_the_error_lists_them(lab, project):
    obj = bpf.load(lab, "src/prog.c", includes=["include"])
    assert obj.program("prog") is obj.program("xdp")
    with pytest.raises(LabError, match=r"no program or section 'tc'; programs: prog \(SEC xdp\)"):
        obj.program("tc")
