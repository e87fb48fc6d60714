"""Run by test_isolation in a pytest of its own: scapy, imported late — first in
a test's body, then in a fixture's setup — wants a destination MAC address."""
import pytest


def test_an_ether_without_dst_after_the_test_itself_imported_scapy():
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    bytes(Ether() / IPv6(dst="2001:db8::77"))


@pytest.fixture
def scapy_layers():
    import scapy.layers.inet  # noqa: F401


@pytest.mark.usefixtures("scapy_layers")
def test_an_ether_without_dst_after_a_fixture_imported_scapy():
    from scapy.layers.inet import IP, Ether
    bytes(Ether() / IP(dst="192.0.2.77"))
