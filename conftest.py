"""This repository's tests get their fixtures from nslab's own pytest plugin
(``topologies/pytest_plugin.py``, registered by the ``pytest11`` entry point when
nslab is installed, as ``ci/setup.sh`` does): the same plugin users get.
"""
import gc
import os

# Workers per CPU for ``-n auto``. Most of this suite waits on the kernel and on
# child processes (an answer, a counted drop, a lab command, a nested run) rather
# than computing: at one worker per core the scenario files kept the CPUs a third
# busy. benchmarks/suite_time.py measures the choice.
WORKERS_PER_CPU = 2


def pytest_xdist_auto_num_workers(config):
    return WORKERS_PER_CPU * len(os.sched_getaffinity(0))


def pytest_collection_finish(session):
    # What is alive once the suite is collected (modules, scapy's and hypothesis's
    # tables, the test items) lives as long as the session: out of the cyclic
    # collector's reach, each of its passes (thousands in the fuzzers) no longer walks
    # it. 4-5% of a verdict-fuzzing worker's CPU; garbage made later is collected as ever.
    gc.collect()
    gc.freeze()
