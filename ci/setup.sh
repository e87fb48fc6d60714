#!/usr/bin/env bash
# Idempotent setup for a fresh Debian/Ubuntu machine, as root: the system
# parts from Debian packages, a venv at .venv with nslab and its test
# dependencies, and Debian's bcc made importable in it.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(clang llvm libbpf-dev libbpf1 libelf1 iproute2 iptables nftables ethtool
      python3 python3-venv python3-bpfcc util-linux kmod tshark iputils-ping tcpdump
      qemu-system-x86 busybox-static file    # VMs for nslab matrix/bisect (virtme-ng)
      chromium)                              # the self-test that renders report.html
# BPF programs that include glibc headers (<arpa/inet.h>, as many tutorials do) need
# gnu/stubs-32.h under clang -target bpf, which does not define __x86_64__.
if [ "$(dpkg --print-architecture)" = amd64 ]; then pkgs+=(libc6-dev-i386); fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bcc compiles against kernel headers. Use the running kernel's when Debian
# ships them; otherwise the newest Debian headers serve UAPI-level programs.
kbuild="/lib/modules/$(uname -r)/build"
if [ ! -e "$kbuild" ]; then
    hdr="linux-headers-$(uname -r)"
    if apt-cache show "$hdr" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$hdr" >/dev/null
    else
        dpkg-query -W -f='${Status}' linux-headers-amd64 2>/dev/null | grep -q "ok installed" ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-amd64 >/dev/null || true
        build=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$build" ]; then
            mkdir -p "/lib/modules/$(uname -r)"
            ln -sfn "$build" "$kbuild"
            ln -sfn "${build%-amd64}-common" "/lib/modules/$(uname -r)/source"
            echo "setup: no headers for $(uname -r); bcc uses $build" >&2
        fi
    fi
fi

# The drop-reason monitor reads skb:kfree_skb through tracefs.
if [ ! -d /sys/kernel/tracing/events ] && [ -d /sys/kernel/tracing ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "setup: tracefs not mountable" >&2
fi

# Debian's python3 is the one python3-bpfcc is built for.
py=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
stamp=.venv/.nslab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[test,vm]"
    touch "$stamp"
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
    ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi
