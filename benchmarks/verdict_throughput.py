#!/usr/bin/env python3
"""How fast nslab judges a capture: a TCP bulk transfer over veth (and over a
VXLAN overlay) is captured at the receiver, then every frame is judged; printed
per case: frames, captured MiB, drops, judging time (wall and CPU: the machine
may be busy), frames/s and MiB/s by CPU time, peak RSS and how much judging
added to it, both against the captured bytes, and tshark's time to check the same
wire frames (from the pcapng nslab writes). Each case runs in a process of its
own: peak RSS is per process.

    sudo .venv/bin/python benchmarks/verdict_throughput.py [--mib 50] [--cases all]
    sudo .venv/bin/python benchmarks/verdict_throughput.py --mib 1024 --cases tso-off-ipv4 \
        --no-tshark

Cases: TSO on/off × IPv4/IPv6, and VXLAN (IPv4 underlay). Goal (issue 16):
>= 100,000 frames/s on one core, peak memory <= 2x the captured bytes.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from topologies import Capture, Lab, traffic

PORT = 5201
CASES = {
    "tso-on-ipv4": dict(family="ipv4", tso=True, vxlan=False),
    "tso-off-ipv4": dict(family="ipv4", tso=False, vxlan=False),
    "tso-on-ipv6": dict(family="ipv6", tso=True, vxlan=False),
    "tso-off-ipv6": dict(family="ipv6", tso=False, vxlan=False),
    "vxlan-ipv4": dict(family="ipv4", tso=True, vxlan=True),
}
ADDRS = {"ipv4": ("10.9.0.1/24", "10.9.0.2"), "ipv6": ("fd09::1/64", "fd09::2")}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(lab: Lab, family: str, tso: bool, vxlan: bool):
    a, b = lab.add_node("sender"), lab.add_node("receiver")
    a_end, b_end = lab.veth(a, "eth0", b, "eth0")
    a_end.add_addr("192.0.2.1/24")
    b_end.add_addr("192.0.2.2/24")
    dev = "eth0"
    if vxlan:
        for node, local, remote in ((a, "192.0.2.1", "192.0.2.2"), (b, "192.0.2.2", "192.0.2.1")):
            lab.vxlan(node, "vx0", vni=9, local=local, remote=remote, underlay="eth0",
                      udpcsum=True)
        a_end, b_end = a.iface("vx0"), b.iface("vx0")
    a_addr, b_addr = ADDRS[family]
    a_end.add_addr(a_addr)
    b_end.add_addr(b_addr.replace("::2", "::2/64") if ":" in b_addr else b_addr + "/24")
    a.iface("eth0").set_offloads({"tso": tso, "gso": tso})
    return a, b, dev, b_addr


def run_case(name: str, mib: int, tshark: bool) -> str:
    case = CASES[name]
    with Lab() as lab:
        sender, receiver, dev, dst = build(lab, **case)
        traffic.TcpSinkServer(receiver, "::" if ":" in dst else "0.0.0.0", PORT)
        # The kernel queues what the capture thread has not read yet; SO_RCVBUFFORCE
        # takes up to 1 GiB (the kernel doubles it for its bookkeeping).
        cap = Capture(receiver, dev, bufsize=min(1 << 30, max(256, mib) << 20)).start()
        started = time.perf_counter()
        result = traffic.tcp_transfer(sender, dst, PORT, nbytes=mib << 20, timeout=120)
        transfer = time.perf_counter() - started
        captured = cap.stop()
    frames = len(captured.packets)
    captured_mib = sum(len(p.frame) for p in captured.packets) / (1 << 20)
    gc.collect()
    rss_before = peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    wire_frames = len(captured.verdicts())
    judging = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    added = peak_rss_mib() - rss_before
    tshark_text = ""
    if tshark and shutil.which("tshark"):
        with tempfile.TemporaryDirectory() as tmp:
            path = captured.write_pcapng(os.path.join(tmp, "c.pcapng"))
            started = time.perf_counter()
            subprocess.run(["tshark", "-r", path, "-Y", "frame.interface_id == 1", "-o",
                            "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T",
                            "fields", "-e", "tcp.checksum.status"],
                           capture_output=True, check=True)
            tshark_text = f", tshark {time.perf_counter() - started:.2f} s"
    return (f"{name:<13} {mib} MiB sent in {transfer:.2f} s ({result.error or 'ok'}); captured "
            f"{frames} frames / {captured_mib:.1f} MiB, kernel dropped {captured.kernel_drops}; "
            f"judged {wire_frames} wire frames in {judging:.2f} s wall, {cpu:.2f} s CPU = "
            f"{wire_frames / cpu:,.0f} wire frames/s, {captured_mib / cpu:.0f} MiB/s; peak RSS "
            f"{peak_rss_mib():.0f} MiB = {peak_rss_mib() / captured_mib:.2f}x the captured bytes "
            f"(before judging {rss_before:.0f}, judging added {added:.0f} = "
            f"{added / captured_mib:.2f}x){tshark_text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--cases", default="all", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--no-tshark", action="store_true")
    args = parser.parse_args()
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"verdict_throughput: unknown case {unknown[0]}", file=sys.stderr)
        return 2
    if len(names) == 1:
        print(run_case(names[0], args.mib, not args.no_tshark), flush=True)
        return 0
    for name in names:
        child = [sys.executable, __file__, "--mib", str(args.mib), "--cases", name]
        subprocess.run(child + ["--no-tshark"] * args.no_tshark, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
