#!/usr/bin/env bash
# `git bisect run` helper for a kernel git tree: build the checked-out commit, boot it
# under the lab's VM runner, run ONE lab test, and exit as `git bisect run` expects:
# 0 good, 1 bad, 125 cannot test (build failure, no boot, the test skipped).
#
#   cd ~/src/linux
#   git bisect start BAD GOOD
#   git bisect run /path/to/nslab/ci/git-bisect-run.sh \
#       'labtests/test_vxlan_overlay.py::test_checksums_on_the_wire[noudpcsum-vxtx_on-ultx_on-masq_random_fully-none]'
#
# ci/bisect-demo/make-tree.sh makes a tree to try it on (README: "Bisect a kernel tree").
#
# Wrong use (no test id, an id the suite does not have, not a kernel tree, no
# ci/setup.sh, a bad setting) is one line on stderr and exit 2 — or 255 while a
# bisection is in progress, which stops `git bisect run` instead of marking the
# commit bad (2 would). Checked before anything is built.
#
# Build: ci/build-kernel.sh (virtme-ng's minimal config plus ci/kernel.config, made
# once per tree; `make bzImage` with ccache, so each step recompiles only what the
# commit changed). Settings (environment):
#   NSLAB_KERNEL_CONFIG, NSLAB_BUILD_JOBS      see ci/build-kernel.sh
#   NSLAB_BISECT_GOOD_IF / NSLAB_BISECT_BAD_IF  outcomes (nslab bisect --good-if/--bad-if)
#   NSLAB_BISECT_TIMEOUT      seconds per boot (default 900)
# Each step appends "commit build_s check_s verdict" to .nslab-bisect/steps.tsv.
set -uo pipefail

nslab_root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(pwd)
cannot_test=125

misuse() {
    echo "git-bisect-run: $*" >&2
    if [ -e "$(git -C "$tree" rev-parse --git-path BISECT_START 2>/dev/null)" ]; then
        exit 255
    fi
    exit 2
}

# -- the arguments, all checked before a build -----------------------------------------
[ $# -eq 1 ] && [ -n "$1" ] || misuse "usage: git-bisect-run.sh '<one lab test id>'"
test_id=$1
case "$test_id" in
    *::*) ;;
    *) misuse "$test_id is not a test id (labtests/test_x.py::test_y[param])" ;;
esac
[ -f "$nslab_root/${test_id%%::*}" ] || misuse "no test file ${test_id%%::*} in $nslab_root"
if [ ! -f "$tree/Makefile" ] || [ ! -d "$tree/arch/x86" ] || [ ! -f "$tree/Kconfig" ]; then
    misuse "$tree is not a kernel tree (run this from the tree, as git bisect run does)"
fi
python="$nslab_root/.venv/bin/python"
for tool in "$nslab_root/.venv/bin/vng" "$nslab_root/.venv/bin/nslab" "$python"; do
    [ -x "$tool" ] || misuse "no $tool: run $nslab_root/ci/setup.sh first"
done
timeout=${NSLAB_BISECT_TIMEOUT:-900}
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || misuse "NSLAB_BISECT_TIMEOUT=$timeout: seconds, more than 0"
# The build's settings and tools (ci/build-kernel.sh checks them, building nothing);
# before the collection, which takes a Python and pytest's start.
settings=$("$nslab_root/ci/build-kernel.sh" --check 2>&1) || misuse "${settings#build-kernel: }"
# An id pytest does not collect would make every commit untestable, hours later.
collected=$(cd "$nslab_root" && "$python" -m pytest --collect-only -q -p no:cacheprovider \
            "$test_id" 2>/dev/null | grep -c '::')
[ "$collected" = 1 ] || misuse "$test_id: the suite collects no such test (pytest --collect-only)"

step_dir="$tree/.nslab-bisect"
mkdir -p "$step_dir"
commit=$(git -C "$tree" rev-parse --short HEAD 2>/dev/null || echo unknown)

# -- 1. build: a commit that does not build cannot be judged -----------------------------
started=$SECONDS
"$nslab_root/ci/build-kernel.sh" > /dev/null 2> "$step_dir/build-kernel.err"
built=$?
build_s=$((SECONDS - started))
case "$built" in
    0) echo "git-bisect-run: $commit built in ${build_s} s" >&2 ;;
    *) echo "git-bisect-run: $commit: $(tail -n 1 "$step_dir/build-kernel.err"); skipping" >&2
       printf '%s\t%d\t-\tcannot-build\n' "$commit" "$build_s" >> "$step_dir/steps.tsv"
       exit "$cannot_test" ;;
esac

# -- 2. boot and run the one test; nslab bisect --check exits 0/1/125 -------------------
started=$SECONDS
"$nslab_root/.venv/bin/nslab" bisect --check "$tree/arch/x86/boot/bzImage" \
    --good-if "${NSLAB_BISECT_GOOD_IF:-passed,xfail}" \
    --bad-if "${NSLAB_BISECT_BAD_IF:-failed,error,xpass}" \
    --timeout "$timeout" --results "$step_dir/$commit" "$test_id"
rc=$?
check_s=$((SECONDS - started))
case "$rc" in
    0) verdict=good ;; 1) verdict=bad ;; 125) verdict=skip ;; *) verdict="nslab-exit-$rc" ;;
esac
printf '%s\t%d\t%d\t%s\n' "$commit" "$build_s" "$check_s" "$verdict" >> "$step_dir/steps.tsv"
echo "git-bisect-run: $commit: $verdict (build ${build_s} s, boot and test ${check_s} s)" >&2
case "$rc" in
    0|1|125) exit "$rc" ;;
    # Anything else is nslab itself failing (bad arguments, no qemu): never blame the
    # commit for it, and never return >127, which would abort the bisection.
    *) echo "git-bisect-run: nslab exited $rc; cannot test" >&2; exit "$cannot_test" ;;
esac
