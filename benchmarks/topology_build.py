#!/usr/bin/env python3
"""Build and tear down a 3-namespace, 2-veth topology with addresses, N times,
through the library and through the same steps as `ip` commands; print both
medians and their ratio (goal: library <= 1/4 of the `ip` way).

    sudo .venv/bin/python benchmarks/topology_build.py [-n 30]
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


def with_library() -> None:
    with Lab(name="bench") as lab:
        nodes = {n: lab.add_node(n) for n in "abc"}
        for a, a_if, a_addr, b, b_if, b_addr in TOPOLOGY:
            end_a, end_b = lab.veth(nodes[a], a_if, nodes[b], b_if)
            end_a.add_addr(a_addr)
            end_b.add_addr(b_addr)


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


def median_ms(fn, n: int) -> float:
    fn()  # warm-up: imports, first netlink sockets
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="iterations per method")
    args = parser.parse_args()
    lib = median_ms(with_library, args.n)
    ip = median_ms(with_ip_commands, args.n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"build+teardown, 3 namespaces, 2 veth pairs, 4 addresses; n={args.n}")
    print(f"  library     median {lib:7.1f} ms")
    print(f"  ip commands median {ip:7.1f} ms")
    print(f"  ratio library/ip   {lib / ip:7.2f}  (goal <= 0.25)")
    print(f"  peak RSS of this process {peak:.0f} MiB")


if __name__ == "__main__":
    main()
