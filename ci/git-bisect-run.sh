#!/usr/bin/env bash
# `git bisect run` helper for a kernel git tree: build the checked-out commit with
# virtme-ng, boot it under the lab's VM runner, run ONE lab test, and exit like
# `git bisect run` expects: 0 good, 1 bad, 125 cannot test (build failure, no boot).
#
#   cd ~/src/linux
#   git bisect start v6.8 v6.7
#   git bisect run /path/to/nslab/ci/git-bisect-run.sh \
#       labtests/selftests/test_lab_core.py::test_netkit_pair_carries_traffic_in_l3_mode
#
# Options (environment):
#   NSLAB_BISECT_GOOD_IF / NSLAB_BISECT_BAD_IF  outcomes for good/bad (nslab bisect --good-if/--bad-if)
#   NSLAB_BISECT_TIMEOUT                       seconds per boot (default 900)
#   NSLAB_BUILD_JOBS                           make -j (default: nproc)
# The kernel config is virtme-ng's minimal one plus ci/kernel.config (what the lab needs).
set -uo pipefail

nslab_root=$(cd "$(dirname "$0")/.." && pwd)
test_id=${1:?usage: git-bisect-run.sh <one lab test id>}
tree=$(pwd)
cannot_test=125

if [ ! -f "$tree/Makefile" ] || [ ! -d "$tree/arch/x86" ]; then
    echo "git-bisect-run: $tree is not a kernel tree" >&2
    exit "$cannot_test"
fi
vng="$nslab_root/.venv/bin/vng"
nslab="$nslab_root/.venv/bin/nslab"
if [ ! -x "$vng" ] || [ ! -x "$nslab" ]; then
    echo "git-bisect-run: run $nslab_root/ci/setup.sh first" >&2
    exit "$cannot_test"
fi

# 1. Build. A commit that does not build cannot be judged: skip it.
# --force regenerates .config at every step (without --commit vng never touches git).
export PATH="$nslab_root/.venv/bin:$PATH"
if ! "$vng" --build --force --config "$nslab_root/ci/kernel.config" \
        --jobs "${NSLAB_BUILD_JOBS:-$(nproc)}" > "$tree/.nslab-build.log" 2>&1; then
    echo "git-bisect-run: build failed ($(tail -n 1 "$tree/.nslab-build.log")); skipping" >&2
    exit "$cannot_test"
fi

# 2. Boot and run the one test; nslab bisect --check prints the step and exits 0/1/125.
"$nslab" bisect --check "$tree/arch/x86/boot/bzImage" \
    --good-if "${NSLAB_BISECT_GOOD_IF:-passed,xfail}" \
    --bad-if "${NSLAB_BISECT_BAD_IF:-failed,error,xpass}" \
    --timeout "${NSLAB_BISECT_TIMEOUT:-900}" \
    --results "$tree/.nslab-bisect/$(git -C "$tree" rev-parse --short HEAD)" \
    "$test_id"
rc=$?
case "$rc" in
    0|1|125) exit "$rc" ;;
    # Anything else is nslab itself failing (bad arguments, no qemu): never blame the
    # commit for it, and never return >127, which would abort the bisection.
    *) echo "git-bisect-run: nslab exited $rc; cannot test" >&2; exit "$cannot_test" ;;
esac
