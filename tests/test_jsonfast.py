"""JSON snapshots take the fast path (the C decoder, positions computed when a message needs them):
the same objects, the same lines and columns, the same located errors as the YAML path."""

from __future__ import annotations

import json

import pytest
from support.paths import POLICIES

from netpol.errors import InputError
from netpol.k8s import jsonfast, load
from netpol.k8s.load import load_paths, parse_text
from netpol.k8s.parse import build_cluster


def snapshot(indent: int | None = 2) -> tuple[str, list[dict]]:
    objs = [r.data for r in load_paths([str(POLICIES)])]
    return json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objs}, indent=indent), objs


def slow(text: str, monkeypatch) -> list:
    with monkeypatch.context() as m:
        m.setattr(jsonfast, "parse", lambda *a: None)
        return parse_text(text, "snap.json")


@pytest.mark.parametrize("indent", [2, None, 4])
def test_the_fast_path_reads_what_the_slow_path_reads(indent, monkeypatch):
    text, objs = snapshot(indent)
    fast, reference = parse_text(text, "snap.json"), slow(text, monkeypatch)
    assert [r.data for r in fast] == [r.data for r in reference] == objs
    for f, s in zip(fast, reference, strict=True):
        assert f.source == s.source
        assert dict(f.lines) == dict(s.lines) and dict(f.cols) == dict(s.cols)
        for path in list(s.lines)[:50]:
            assert f.position(path) == s.position(path)


def test_it_is_taken_and_positions_wait_until_asked(monkeypatch):
    text, _ = snapshot()
    calls = []
    real = load._positions
    monkeypatch.setattr(load, "_positions", lambda t: calls.append(t) or real(t))
    raws = parse_text(text, "snap.json")
    build_cluster(raws)  # a valid snapshot: no position is needed
    assert calls == []
    raws[3].position(("metadata", "name"))
    assert len(calls) == 1 and calls[0].lstrip().startswith("{")  # one object's span, not the file


def test_errors_are_located_as_on_the_slow_path(monkeypatch):
    text, objs = snapshot()
    bad = json.loads(text)
    pol = next(o for o in bad["items"] if o["kind"] == "NetworkPolicy")
    pol["spec"]["podSelector"]["matchLabel"] = {"role": "db"}
    text = json.dumps(bad, indent=2)
    with pytest.raises(InputError) as fast_err:
        build_cluster(parse_text(text, "snap.json"))
    with pytest.raises(InputError) as slow_err:
        build_cluster(slow(text, monkeypatch))
    assert str(fast_err.value) == str(slow_err.value) and "matchLabel" in str(fast_err.value)


@pytest.mark.parametrize("text", ['{"kind": "Pod", "kind": "Pod"}', '{"kind": NaN}', '{"a": 1} {"b": 2}',
                                  '{"kind": "List", "items": [' + "[" * 5000 + "]" * 5000 + "]}",
                                  '{"n": ' + "9" * 5000 + "}"])
def test_what_the_fast_path_is_unsure_of_goes_the_slow_way(text):
    assert jsonfast.parse(text, "x.json", lambda t: ({}, {})) is None
