"""The pipeline's layering, as the folders draw it: each package imports only the ones below it.

    errors, spans, gcpause, netns, escape      ground: no netpol imports but each other
    k8s                                        the input language
    evaluate                                   offline semantics, on k8s
    nft                                        plan -> render -> apply, on evaluate's matching rules
    lint                                       on evaluate
    lab, agent                                 on nft (and evaluate)
    cli                                        on everything
"""

from __future__ import annotations

import ast
import pathlib

import netpol

GROUND = {"errors", "spans", "gcpause", "netns", "escape", "__init__", "__version__"}
MAY_IMPORT = {
    "k8s": GROUND,
    "evaluate": GROUND | {"k8s"},
    "nft": GROUND | {"k8s", "evaluate"},
    "lint": GROUND | {"k8s", "evaluate"},
    "lab": GROUND | {"k8s", "evaluate", "nft"},
    "pictures": GROUND | {"k8s", "evaluate"},
    "agent": GROUND | {"k8s", "evaluate", "nft"},
    "cli": GROUND | {"k8s", "evaluate", "nft", "lint", "lab", "agent", "pictures"},
}
ROOT = pathlib.Path(netpol.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    """The netpol packages and ground modules a file imports, at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "netpol":
                if len(parts) == 1:  # from netpol import x
                    out |= {a.name for a in node.names}
                else:
                    out.add(parts[1])
    return out


def test_packages_import_only_downwards():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        home = parts[0]
        allowed = MAY_IMPORT.get(home, GROUND) | {home}
        wrong += [f"{path.relative_to(ROOT)} imports netpol.{m}" for m in sorted(_imports(path) - allowed)]
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from netpol.nft.render import render\nimport netpol.cli\nfrom netpol import spans\n")
    assert _imports(bad) == {"nft", "cli", "spans"}


def test_test_modules_share_only_through_support():
    """Shared test helpers live in tests/support/; no test module imports another."""
    tests = pathlib.Path(__file__).parent
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            wrong += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith(("test_", "conftest"))]
    assert wrong == []


def test_models_are_frozen_all_the_way_down():
    """A pod's labels cannot be edited behind the plan compiled from them, and models hash."""
    import pytest

    from netpol.k8s.model import Labels, Namespace, Pod
    pod = Pod(namespace="a", name="p", labels={"app": "web"})
    with pytest.raises(TypeError):
        pod.labels["app"] = "db"  # type: ignore[index]
    assert pod.labels == {"app": "web"} and isinstance(pod.labels, Labels)
    assert hash(pod) == hash(Pod(namespace="a", name="p", labels={"app": "web"}))
    assert len({Namespace(name="a", labels={"k": "v"}), Namespace(name="a", labels=Labels({"k": "v"}))}) == 1
    assert pod.model_dump()["labels"] == {"app": "web"}


def test_a_copy_does_not_keep_the_originals_cached_values():
    """The agent's store hides a pod's addresses with model_copy while a newer pod claims them; the
    copy must not answer with the addresses the original had cached."""
    from netpol.k8s.model import Pod
    pod = Pod(namespace="a", name="p", ips=("198.18.0.1",))
    assert [str(a) for a in pod.addresses] == ["198.18.0.1"]  # cached now
    bare = pod.model_copy(update={"ips": ()})
    assert bare.addresses == () and [str(a) for a in pod.addresses] == ["198.18.0.1"]
