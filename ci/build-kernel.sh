#!/usr/bin/env bash
# Build the kernel tree in the current directory for the lab's VMs: configure once
# (virtme-ng's minimal config plus the fragments below; remade only when a fragment
# changes), then `make bzImage` in the tree with ccache, so that a rebuild after a
# checkout or a patch recompiles only what changed. Prints the image's path.
#
#   cd ~/src/linux && git am /path/to/nslab/ci/patches/*.patch
#   /path/to/nslab/ci/build-kernel.sh
#   nslab matrix --kernel arch/x86/boot/bzImage -- labtests/test_vxlan_overlay.py
#
# --check checks the tree, settings and tools and stops there.
# Exit: 0 built, 1 the tree does not configure or build (log in .nslab-build/),
# 2 wrong use (one line on stderr). Settings (environment):
#   NSLAB_KERNEL_CONFIG  config fragments, ':'-separated, relative to nslab's checkout
#                        (default ci/kernel.config; add ci/kernel-btf.config for BTF)
#   NSLAB_BUILD_JOBS     make -j (default: nproc)
set -uo pipefail

nslab_root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(pwd)
build_deps="apt-get install build-essential ccache flex bison bc libelf-dev libssl-dev"
misuse() { echo "build-kernel: $*" >&2; exit 2; }

check_only=false
[ "${1:-}" = --check ] && { check_only=true; shift; }
[ $# -eq 0 ] || misuse "usage: build-kernel.sh [--check] (in a kernel tree; settings in the environment)"
if [ ! -f "$tree/Makefile" ] || [ ! -d "$tree/arch/x86" ] || [ ! -f "$tree/Kconfig" ]; then
    misuse "$tree is not a kernel tree"
fi
[ -x "$nslab_root/.venv/bin/vng" ] || misuse "no $nslab_root/.venv/bin/vng: run $nslab_root/ci/setup.sh first"
jobs=${NSLAB_BUILD_JOBS:-$(nproc)}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || misuse "NSLAB_BUILD_JOBS=$jobs: a number of jobs"
fragments=()
IFS=: read -r -a configs <<< "${NSLAB_KERNEL_CONFIG:-ci/kernel.config}"
for fragment in "${configs[@]}"; do
    [ -n "$fragment" ] || continue
    case "$fragment" in /*) ;; *) fragment="$nslab_root/$fragment" ;; esac
    [ -f "$fragment" ] || misuse "NSLAB_KERNEL_CONFIG: no file $fragment"
    fragments+=("$fragment")
done
((${#fragments[@]})) || misuse "NSLAB_KERNEL_CONFIG names no fragment"
for tool in make gcc ccache flex bison bc; do
    command -v "$tool" >/dev/null || misuse "$tool not found (kernel builds: $build_deps)"
done
for header in libelf.h openssl/ssl.h; do
    [ -f "/usr/include/$header" ] || misuse "no <$header> (kernel builds: $build_deps)"
done

"$check_only" && exit 0       # --check: the settings and tools only, nothing written

logs="$tree/.nslab-build"
mkdir -p "$logs"
export PATH="$nslab_root/.venv/bin:$PATH"

# -- configure (once per tree and fragment set) -----------------------------------------
stamp=$(cat "${fragments[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$tree/.config" ] || [ "$(cat "$logs/config-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "build-kernel: configuring (vng --kconfig + ${fragments[*]##*/})" >&2
    kconfig_args=()
    for fragment in "${fragments[@]}"; do kconfig_args+=(--config "$fragment"); done
    # virtme-ng appends its own generic options after ours (debug info among them):
    # append ours once more so that they win.
    if ! { vng --kconfig --force "${kconfig_args[@]}" && cat "${fragments[@]}" >> .config &&
           make olddefconfig; } > "$logs/config.log" 2>&1; then
        echo "build-kernel: configuring failed: $(tail -n 1 "$logs/config.log")" >&2
        exit 1
    fi
    echo "$stamp" > "$logs/config-stamp"
fi

# -- build -------------------------------------------------------------------------------
started=$SECONDS
# A fixed build stamp keeps init/version.c (and ccache's hits) the same at every build.
if ! make -j "$jobs" CC="ccache gcc" KBUILD_BUILD_TIMESTAMP="nslab build" \
        KBUILD_BUILD_USER=nslab KBUILD_BUILD_HOST=lab bzImage > "$logs/build.log" 2>&1; then
    echo "build-kernel: does not build: $(grep -m1 -E 'error:' "$logs/build.log" ||
          tail -n 1 "$logs/build.log")" >&2
    exit 1
fi
echo "build-kernel: built in $((SECONDS - started)) s" >&2
echo "$tree/arch/x86/boot/bzImage"
