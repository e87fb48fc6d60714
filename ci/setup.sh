#!/usr/bin/env bash
# Idempotent setup for a fresh Debian/Ubuntu machine, as root: the system
# parts from Debian packages and a venv at .venv with nslab and its test
# dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(clang llvm libbpf-dev libbpf1 libelf1 iproute2 iptables nftables ethtool
      python3 python3-venv util-linux kmod tshark iputils-ping tcpdump
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

# The drop-reason monitor names reasons from skb:kfree_skb's format in tracefs.
if [ ! -d /sys/kernel/tracing/events ] && [ -d /sys/kernel/tracing ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "setup: tracefs not mountable" >&2
fi

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
# Bytecode for nslab and its suite, written once here rather than compiled again by
# every process of a run (an editable install is not byte-compiled, and where
# PYTHONDONTWRITEBYTECODE is set nothing would ever write it): see topologies/bytecode.py.
.venv/bin/python -m topologies.bytecode labtests >/dev/null ||
    echo "setup: the suite's bytecode was not warmed (its collection failed)" >&2
