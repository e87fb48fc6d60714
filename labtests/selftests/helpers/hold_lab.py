"""Build a small but complete lab, print what it made as JSON, then wait to be killed.

Used by the isolation tests: run twice at once it shows two owners never
collide; killed with SIGKILL it shows that ``nslab sweep`` removes everything.
"""
import json
import signal
import sys
import time

from topologies import Lab, firewall, traffic
from topologies.lab.lab import raise_on_termination

raise_on_termination()
# Ctrl-C interrupts even when we were started with SIGINT ignored (a background job
# of a non-interactive shell, e.g. a CI script's `cmd &`, passes SIG_IGN down to
# pytest, its workers and this helper): the test is that an interrupted owner cleans up.
signal.signal(signal.SIGINT, signal.default_int_handler)

lab = Lab(name="hold")
a, b = lab.add_node("client"), lab.add_node("server")
end_a, end_b = lab.veth(a, "eth0", b, "eth0")
end_a.add_addr("10.0.0.1/24")
end_b.add_addr("10.0.0.2/24")
lab.vxlan(a, "vx0", vni=7, local="10.0.0.1", remote="10.0.0.2", underlay="eth0", udpcsum=True)
firewall.apply_iptables(b, "*filter\n-A INPUT -p udp --dport 9 -j DROP\nCOMMIT\n")
sleeper = a.popen(["sleep", "3600"])
server = traffic.UdpEchoServer(b, "10.0.0.2", 7000)
answered = traffic.udp_request(a, "10.0.0.2", 7000, count=3).answered
made = {"prefix": lab.prefix, "namespaces": [n.netns for n in lab.nodes.values()],
        "pid": sleeper.pid, "answered": answered, "prog_ids": []}
if "--bpf" in sys.argv:
    from topologies import bpf
    obj = bpf.load(lab, "bpf/core_probe.c")
    bpf.attach_tc(b.iface("eth0"), obj.program("tc_count"), "ingress")
    made["prog_ids"] = [bpf.prog_id(obj.program("tc_count"))]
print(json.dumps(made), flush=True)
if "--exit" in sys.argv:
    lab.close()
    sys.exit(0)
while True:
    time.sleep(1)
