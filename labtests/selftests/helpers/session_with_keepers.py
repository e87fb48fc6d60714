"""A test session that leaves everything a session can leave, then waits to be killed.

Run by the isolation tests as an inner pytest session: it starts a keeper with
``nslab up`` (tied to this session through $NSLAB_SESSION), keeps a lab of its
own under a keeper (``Lab.hand_over``), holds a plain lab, writes what it made
as JSON to $NSLAB_MADE (the event the outer test waits on) and sleeps.
"""
import json
import os
import subprocess
import sys
import time

from topologies import Lab


def test_holds_a_keeper_a_kept_lab_and_a_lab(lab):
    up = subprocess.run([sys.executable, "-m", "topologies.cli", "up", "vxlan_overlay",
                         "--name", os.environ["NSLAB_UP_NAME"]],
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    kept = Lab()
    kept.add_node("kept")
    kept.hand_over(f"kept-{kept.prefix.rsplit('-', 1)[1]}")
    lab.add_node("held")
    made = {"session": os.environ["NSLAB_SESSION"], "pid": os.getpid(),
            "prefixes": [kept.prefix, lab.prefix], "up_name": os.environ["NSLAB_UP_NAME"]}
    with open(os.environ["NSLAB_MADE"] + ".tmp", "w") as f:
        json.dump(made, f)
    os.replace(os.environ["NSLAB_MADE"] + ".tmp", os.environ["NSLAB_MADE"])
    time.sleep(600)   # killed by the outer test long before
