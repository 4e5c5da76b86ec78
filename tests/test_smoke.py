from support.paths import POLICIES

from netpol.evaluate.decide import decide
from netpol.evaluate.resolve import endpoint
from netpol.k8s import load_cluster


def test_bundled_example_mission():
    c = load_cluster([str(POLICIES)])
    def ok(s, d, port):
        return decide(c, endpoint(c, s), endpoint(c, d), port).allowed
    assert ok("tenant3/frontend-0", "tenant3/db-0", 5432)
    assert ok("tenant2/app-0", "tenant3/db-0", 5432)
    assert not ok("tenant3/worker-0", "tenant3/db-0", 5432)
    assert not ok("tenant1/web-0", "tenant3/db-0", 5432)
    assert not ok("tenant2/app-0", "tenant3/db-0", 8080)
