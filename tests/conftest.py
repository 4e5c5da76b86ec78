import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces and nftables")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab():
    """`lab(cluster, ports=...)` builds a lab of the cluster's pods; all are removed afterwards."""
    from support.kernel import lab_maker
    yield from lab_maker()
