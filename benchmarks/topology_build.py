#!/usr/bin/env python3
"""Build and tear down a 3-namespace, 2-veth topology with addresses, N times,
through the library and through the same steps as `ip` commands; print both
medians and their ratio (goal: library <= 1/4 of the `ip` way). The two take
turns, run by run, and the load average is printed with the figures.

    sudo .venv/bin/python benchmarks/topology_build.py [-n 30] [--breakdown]
"""
import argparse
import resource
import secrets
import statistics
import subprocess
import time

from topologies import Lab

TOPOLOGY = (("a", "eth0", "10.9.1.1/24", "b", "eth0", "10.9.1.2/24"),
            ("b", "eth1", "10.9.2.1/24", "c", "eth0", "10.9.2.2/24"))


def with_library(mark=lambda phase: None) -> None:
    """The topology through the library; ``mark`` is called after each phase."""
    with Lab(name="bench") as lab:
        nodes = {n: lab.add_node(n) for n in "abc"}
        mark("namespaces")
        ends = [(lab.veth(nodes[a], a_if, nodes[b], b_if), a_addr, b_addr)
                for a, a_if, a_addr, b, b_if, b_addr in TOPOLOGY]
        mark("veth pairs (until operational)")
        for (end_a, end_b), a_addr, b_addr in ends:
            end_a.add_addr(a_addr)
            end_b.add_addr(b_addr)
        mark("addresses")
    mark("teardown")


def with_ip_commands() -> None:
    prefix = f"nslabbench-{secrets.token_hex(3)}"
    ns = {n: f"{prefix}-{n}" for n in "abc"}

    def ip(*args):
        subprocess.run(["ip", *args], check=True)
    try:
        for name in ns.values():
            ip("netns", "add", name)
        for name in ns.values():
            ip("-n", name, "link", "set", "lo", "up")
        for a, a_if, a_addr, b, b_if, b_addr in TOPOLOGY:
            ip("-n", ns[a], "link", "add", a_if, "type", "veth", "peer", "name", b_if,
               "netns", ns[b])
            ip("-n", ns[a], "addr", "add", a_addr, "dev", a_if)
            ip("-n", ns[b], "addr", "add", b_addr, "dev", b_if)
            ip("-n", ns[a], "link", "set", a_if, "up")
            ip("-n", ns[b], "link", "set", b_if, "up")
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)


def medians_ms(fns, n: int) -> list[float]:
    """Each function's median over n runs, the functions taking turns, so that
    a change in the machine's load falls on all of them alike."""
    for fn in fns:
        fn()  # warm-up: imports, first netlink sockets
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def library_breakdown(n: int) -> dict[str, float]:
    """Median milliseconds of each phase of the library's build."""
    phases: dict[str, list[float]] = {}
    for _ in range(n):
        last = time.perf_counter()

        def mark(phase):
            nonlocal last
            now = time.perf_counter()
            phases.setdefault(phase, []).append((now - last) * 1000)
            last = now
        with_library(mark)
    return {phase: statistics.median(t) for phase, t in phases.items()}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="iterations per method")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the library's phases (n more builds)")
    args = parser.parse_args()
    load_before = loadavg()
    lib, ip = medians_ms([with_library, with_ip_commands], args.n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"build+teardown, 3 namespaces, 2 veth pairs, 4 addresses; n={args.n}")
    print(f"  library     median {lib:7.1f} ms")
    print(f"  ip commands median {ip:7.1f} ms")
    print(f"  ratio library/ip   {lib / ip:7.2f}  (goal <= 0.25)")
    print(f"  load average before {load_before}, after {loadavg()}")
    print(f"  peak RSS of this process {peak:.0f} MiB")
    if args.breakdown:
        print("  library phases (median ms):")
        for phase, ms in library_breakdown(args.n).items():
            print(f"    {phase:32s} {ms:5.2f}")


if __name__ == "__main__":
    main()
