"""Run by test_isolation in a pytest of its own: scapy, imported only in a
fixture's setup (as the scenario files do), wants a destination MAC address."""
import pytest


@pytest.fixture
def scapy_layers():
    import scapy.layers.l2  # noqa: F401


@pytest.mark.usefixtures("scapy_layers")
def test_an_ether_without_dst():
    from scapy.layers.inet import IP, Ether
    bytes(Ether() / IP(dst="192.0.2.77"))
