"""A lab test that fails on purpose: used to check --keep-failed and artifacts."""
import pytest

from topologies import traffic


def test_fails_with_a_lab(lab, capture):
    a, b = lab.add_node("client"), lab.add_node("server")
    end_a, end_b = lab.veth(a, "eth0", b, "eth0")
    end_a.add_addr("10.0.0.1/24")
    end_b.add_addr("10.0.0.2/24")
    cap = capture(b, "eth0")
    traffic.ping(a, "10.0.0.2", count=1)
    cap.stop()
    pytest.fail("failing on purpose")
