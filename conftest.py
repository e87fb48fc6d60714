"""This repository's tests get their fixtures from nslab's own pytest plugin
(``topologies/pytest_plugin.py``, registered by the ``pytest11`` entry point when
nslab is installed, as ``ci/setup.sh`` does): the same plugin users get.
"""
