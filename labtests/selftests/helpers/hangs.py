"""A lab test that hangs: the per-test timeout must fail it with the stack and
still remove its lab."""
import os
import threading


def test_hangs_in_a_lab(lab):
    lab.add_node("stuck")
    with open(os.environ["NSLAB_MADE"], "w") as f:
        f.write(lab.prefix)
    threading.Event().wait()   # forever: a hung netlink call or socket
