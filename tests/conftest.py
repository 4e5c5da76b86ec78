import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
CORPUS = ROOT.parent / "shared" / "corpus" / "np-guard"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces and nftables")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)
