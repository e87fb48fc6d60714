"""Run by test_isolation in a network namespace of its own (``unshare --net``), which
is this session's root namespace: its first test changes it, as a leaking lab would."""
import subprocess


def test_brings_loopback_up():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
