"""Each lint check fires on a case, stays silent on a near miss, and points at the right line."""

from __future__ import annotations

from support.lintkit import DNS_POD, WORLD, col_of, docs, findings, line_of, policy

from netpol.lint import Settings

DENY_ALL = policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]")


def only(tmp_path, text, code, **kw):
    return findings(tmp_path, text, code, **kw)


# NP001 -------------------------------------------------------------------------------------------------
def test_np001_policy_selects_nothing(tmp_path):
    text = docs(WORLD, policy("ghost", "podSelector: {matchLabels: {app: ghost}}  # HERE"))
    [f] = only(tmp_path, text, "NP001")
    assert (f.line, f.column) == (line_of(text, "# HERE"), col_of(text, "# HERE", "podSelector"))
    assert "shop/ghost" in f.message and f.severity == "warning"


def test_np001_near_miss_and_policies_alone(tmp_path):
    assert not only(tmp_path, docs(WORLD, policy("web", "podSelector: {matchLabels: {app: web}}")), "NP001")
    assert not only(tmp_path, policy("ghost", "podSelector: {matchLabels: {app: ghost}}"), "NP001")


def test_np001_host_network_pods_are_never_selected(tmp_path):
    host = ("apiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: shop, labels: {app: h}}\n"
            "spec: {hostNetwork: true, containers: [{name: c, image: x}]}\nstatus: {podIP: 198.18.0.99}\n")
    assert only(tmp_path, docs(WORLD, host, policy("h", "podSelector: {matchLabels: {app: h}}")), "NP001")


# NP002 -------------------------------------------------------------------------------------------------
def test_np002_dangling_peers(tmp_path):
    text = docs(WORLD, policy("p", """\
        podSelector: {}
        ingress:
        - from:
          - podSelector: {matchLabels: {app: db}}
          - podSelector: {matchLabels: {app: ghost}}  # POD
          - namespaceSelector: {matchLabels: {team: nobody}}  # NS
        """))
    found = only(tmp_path, text, "NP002")
    assert [f.line for f in found] == [line_of(text, "# POD"), line_of(text, "# NS")]
    assert "peer 1" in found[0].message and "matches no namespace" in found[1].message


def test_np002_dns_peer_without_dns_pods(tmp_path):
    dns = "podSelector: {}\negress:\n- to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]"
    assert not only(tmp_path, docs(WORLD, policy("dns", dns)), "NP002")
    other = dns.replace("k8s-app: kube-dns", "k8s-app: kube-dnz")
    assert only(tmp_path, docs(WORLD, policy("dns", other)), "NP002")


def test_np002_pod_selector_alone_stays_in_own_namespace(tmp_path):
    # client lives in ops: a podSelector alone looks in shop only
    text = docs(WORLD, policy("p", "podSelector: {}\ningress:\n- from: [{podSelector: {matchLabels: {app: client}}}]"))
    assert len(only(tmp_path, text, "NP002")) == 1
    text = docs(WORLD, policy("p", "podSelector: {}\ningress:\n- from: [{namespaceSelector: {}, "
                                   "podSelector: {matchLabels: {app: client}}}]"))
    assert not only(tmp_path, text, "NP002")


# NP003 -------------------------------------------------------------------------------------------------
def test_np003_named_port_not_declared(tmp_path):
    text = docs(WORLD, policy("db", """\
        podSelector: {matchLabels: {app: db}}
        ingress:
        - ports:
          - port: postgres
          - port: http  # HERE
        """))
    [f] = only(tmp_path, text, "NP003")
    assert (f.line, f.column) == (line_of(text, "# HERE"), col_of(text, "# HERE", "port"))
    assert "'http'" in f.message


def test_np003_protocol_mismatch_and_egress(tmp_path):
    text = docs(WORLD, policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - ports: [{port: http, protocol: UDP}]  # IN
        egress:
        - to: [{podSelector: {matchLabels: {app: db}}}]
          ports: [{port: postgres}, {port: http}]  # OUT
        """))
    found = only(tmp_path, text, "NP003")
    assert [f.line for f in found] == [line_of(text, "# IN"), line_of(text, "# OUT")]
    assert "declares it as TCP" in found[0].message and "egress" in found[1].message


def test_np003_near_miss(tmp_path):
    text = docs(WORLD, policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - ports: [{port: http}]
        egress:
        - to: [{podSelector: {matchLabels: {app: db}}}]
          ports: [{port: postgres}]
        """))
    assert not only(tmp_path, text, "NP003")


# NP004 -------------------------------------------------------------------------------------------------
def test_np004_default_deny_egress_blocks_dns(tmp_path):
    text = docs(WORLD, policy("deny", "podSelector: {}\npolicyTypes: [Egress]  # HERE"))
    [f] = only(tmp_path, text, "NP004")
    assert f.line == line_of(text, "# HERE") and "2 pods" in f.message and "no DNS" in f.message


def test_np004_allowed_anywhere_or_to_kube_dns(tmp_path):
    anywhere = policy("dns", "podSelector: {}\negress:\n- ports: [{port: 53, protocol: UDP}, {port: 53}]")
    assert not only(tmp_path, docs(WORLD, DENY_ALL, anywhere), "NP004")
    # no DNS pod in the input: the stand-in CoreDNS in kube-system matches this peer
    to_dns = policy("dns", """\
        podSelector: {}
        egress:
        - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}},
                podSelector: {matchLabels: {k8s-app: kube-dns}}}]
          ports: [{port: dns, protocol: UDP}, {port: dns-tcp}]
        """)
    assert not only(tmp_path, docs(WORLD, DENY_ALL, to_dns), "NP004")


def test_np004_udp_only_with_real_dns_pod(tmp_path):
    udp = policy("dns", """\
        podSelector: {}
        egress:
        - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
          ports: [{port: 53, protocol: UDP}]  # HERE
        """)
    [f] = only(tmp_path, docs(WORLD, DNS_POD, udp), "NP004")
    assert "not TCP 53" in f.message and f.line == line_of(docs(WORLD, DNS_POD, udp), "egress:")
    both = udp.replace("protocol: UDP}]", "protocol: UDP}, {port: 53, protocol: TCP}]")
    assert not only(tmp_path, docs(WORLD, DNS_POD, both), "NP004")
    # DNS pods elsewhere: the rule reaches none of them
    wrong_place = udp.replace("namespaceSelector: {}, ", "").replace("protocol: UDP}]", "protocol: UDP}, {port: 53}]")
    assert only(tmp_path, docs(WORLD, DNS_POD, wrong_place), "NP004")


def test_np004_policies_alone(tmp_path):
    assert only(tmp_path, DENY_ALL, "NP004")
    allow = policy("dns", "podSelector: {}\negress:\n- ports: [{port: 53, protocol: UDP}, {port: 53}]")
    assert not only(tmp_path, docs(DENY_ALL, allow), "NP004")


# NP005 -------------------------------------------------------------------------------------------------
def test_np005_not_isolated_per_namespace(tmp_path):
    text = docs(WORLD, policy("in", "podSelector: {}\npolicyTypes: [Ingress]"))
    found = only(tmp_path, text, "NP005")
    msgs = sorted(f.message for f in found)
    assert len(found) == 3 and all(f.severity == "info" for f in found)
    assert any("ops is not isolated for ingress" not in m and "namespace ops" in m for m in msgs)
    assert not any("shop" in m and "ingress" in m for m in msgs)  # near miss: shop is isolated for ingress
    ops = [f for f in found if "namespace ops" in f.message]
    assert {f.line for f in ops} == {line_of(text, "name: ops")}


# NP006 -------------------------------------------------------------------------------------------------
def test_np006_rules_ignored_by_policy_types(tmp_path):
    text = docs(WORLD, policy("p", """\
        podSelector: {}
        policyTypes: [Ingress]
        ingress: [{}]
        egress:  # HERE
        - to: [{podSelector: {}}]
        """))
    [f] = only(tmp_path, text, "NP006")
    assert f.line == line_of(text, "# HERE") and f.severity == "error" and "omits Egress" in f.message


def test_np006_near_miss_default_policy_types(tmp_path):
    text = docs(WORLD, policy("p", "podSelector: {}\ningress: [{}]\negress:\n- to: [{podSelector: {}}]"))
    assert not only(tmp_path, text, "NP006")


# NP007 -------------------------------------------------------------------------------------------------
SPLIT = """\
podSelector: {matchLabels: {app: web}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {team: ops}}
  - podSelector: {matchLabels: {app: client}}  # HERE
"""


def test_np007_split_peers(tmp_path):
    text = docs(WORLD, policy("web", SPLIT))
    [f] = only(tmp_path, text, "NP007")
    assert (f.line, f.column) == (line_of(text, "# HERE"), col_of(text, "# HERE", "podSelector"))
    assert "peers 0 and 1" in f.message
    assert only(tmp_path, policy("web", SPLIT), "NP007")  # policies alone: syntax is enough


def test_np007_near_misses(tmp_path):
    joined = SPLIT.replace("  - podSelector", "    podSelector")
    assert not only(tmp_path, docs(WORLD, policy("web", joined)), "NP007")
    # the input shows the OR is meant: no app=web pod in ops, so "web pods of ops" would select nothing
    intended = SPLIT.replace("{app: client}", "{app: web}")  # ops has no app=web pod
    assert not only(tmp_path, docs(WORLD, policy("web", intended)), "NP007")


# NP008 -------------------------------------------------------------------------------------------------
def test_np008_identical_rules_report_the_later(tmp_path):
    text = docs(WORLD, policy("db", """\
        podSelector: {matchLabels: {app: db}}
        ingress:
        - from: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: 5432}]
        - from: [{podSelector: {matchLabels: {app: web}}}]  # HERE
          ports: [{port: 5432}]
        """))
    [f] = only(tmp_path, text, "NP008")
    assert f.line == line_of(text, "# HERE") and "rule 0" in f.message and "input" not in f.message


def test_np008_resolved_and_syntactic(tmp_path):
    text = docs(WORLD, policy("db", """\
        podSelector: {matchLabels: {app: db}}
        ingress:
        - from: [{podSelector: {matchLabels: {app: web}}}]  # HERE
          ports: [{port: 5432}]
        - from: [{podSelector: {}}, {ipBlock: {cidr: 198.19.0.0/16}}]
        - from: [{ipBlock: {cidr: 198.19.1.0/24}}]  # BLOCK
          ports: [{port: 5000, endPort: 6000}]
        """))
    found = only(tmp_path, text, "NP008")
    assert [f.line for f in found] == [line_of(text, "# HERE"), line_of(text, "# BLOCK")]
    assert "for the pods in the input" in found[0].message and "input" not in found[1].message


def test_np008_near_miss(tmp_path):
    text = docs(WORLD, policy("db", """\
        podSelector: {matchLabels: {app: db}}
        ingress:
        - from: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: 5432}]
        - from: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: 5432, protocol: UDP}]
        - from: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.1.0/24]}}]
        - from: [{ipBlock: {cidr: 198.19.1.0/24}}]
        """))
    assert not only(tmp_path, text, "NP008")


# NP009 -------------------------------------------------------------------------------------------------
def test_np009_ipblock_covers_pods(tmp_path):
    text = docs(WORLD, policy("p", """\
        podSelector: {}
        egress:
        - to:
          - ipBlock: {cidr: 198.18.0.0/24}  # HERE
        """))
    [f] = only(tmp_path, text, "NP009")
    assert (f.line, f.column) == (line_of(text, "# HERE"), col_of(text, "# HERE", "cidr"))
    assert "3 pods" in f.message


def test_np009_near_miss_with_except(tmp_path):
    text = docs(WORLD, policy("p", "podSelector: {}\negress:\n- to:\n  - ipBlock: {cidr: 198.18.0.0/16, "
                                   "except: [198.18.0.0/24]}"))
    assert not only(tmp_path, text, "NP009")


# NP010 -------------------------------------------------------------------------------------------------
def test_np010_allow_all_voids_default_deny(tmp_path):
    allow = policy("allow", "podSelector: {}\ningress:\n- {}  # HERE")
    text = docs(WORLD, DENY_ALL, allow)
    [f] = only(tmp_path, text, "NP010")
    assert f.line == line_of(text, "# HERE") and "shop/deny" in f.message
    everyone = policy("allow", "podSelector: {}\ningress:\n- from: [{namespaceSelector: {}}]  # HERE")
    assert only(tmp_path, docs(WORLD, DENY_ALL, everyone), "NP010")


def test_np010_near_misses(tmp_path):
    some_pods = policy("allow", "podSelector: {matchLabels: {app: web}}\ningress:\n- {}")
    assert not only(tmp_path, docs(WORLD, DENY_ALL, some_pods), "NP010")
    with_ports = policy("allow", "podSelector: {}\ningress:\n- ports: [{port: 80}]")
    assert not only(tmp_path, docs(WORLD, DENY_ALL, with_ports), "NP010")
    other_ns = policy("allow", "podSelector: {}\ningress:\n- {}", ns="ops")
    assert not only(tmp_path, docs(WORLD, DENY_ALL, other_ns), "NP010")


# NP011 -------------------------------------------------------------------------------------------------
TENANTS = docs(WORLD, DENY_ALL, policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]", ns="ops"))


def test_np011_is_opt_in(tmp_path):
    text = docs(TENANTS, policy("in", "podSelector: {}\ningress: [{from: [{namespaceSelector: {}}]}]"),
                policy("out", "podSelector: {}\negress: [{}]", ns="ops"))
    assert not findings(tmp_path, text, "NP011", Settings())
    assert findings(tmp_path, text, "NP011", Settings(tenant_label="team"))


def test_np011_cross_tenant_grouped_by_rule(tmp_path):
    text = docs(TENANTS,
                policy("db-in", """\
                    podSelector: {matchLabels: {app: db}}
                    ingress:
                    - from: [{namespaceSelector: {matchLabels: {team: ops}}}]  # IN
                      ports: [{port: postgres}]
                    - from: [{podSelector: {matchLabels: {app: web}}}]  # SAME
                    """),
                policy("client-out", """\
                    podSelector: {}
                    egress:
                    - to: [{namespaceSelector: {matchLabels: {team: shop}}}]  # OUT
                    """, ns="ops"))
    found = findings(tmp_path, text, "NP011", Settings(tenant_label="team"))
    assert [f.line for f in found] == [line_of(text, "# IN"), line_of(text, "# OUT")]
    assert "ops → shop (e.g. ops/client → shop/db TCP/5432)" in found[0].message
    assert "ops → shop" in found[1].message and "ops/client → shop/db TCP/5432" in found[1].message


def test_np011_near_miss_far_side_closed(tmp_path):
    # shop's db admits ops, but ops' egress only reaches its own namespace: nothing crosses
    text = docs(TENANTS,
                policy("db-in", "podSelector: {matchLabels: {app: db}}\ningress:\n"
                                "- from: [{namespaceSelector: {matchLabels: {team: ops}}}]"),
                policy("own", "podSelector: {}\negress:\n- to: [{podSelector: {}}]", ns="ops"))
    assert not findings(tmp_path, text, "NP011", Settings(tenant_label="team"))


def test_np011_unisolated_namespaces(tmp_path):
    found = findings(tmp_path, WORLD, "NP011", Settings(tenant_label="team"))
    assert sorted(f.line for f in found) == sorted([line_of(WORLD, "name: shop"), line_of(WORLD, "name: ops")])
    # namespaces without the label are no tenants
    assert not findings(tmp_path, WORLD, "NP011", Settings(tenant_label="tier"))


def test_np011_default_tenant_is_the_namespace(tmp_path):
    found = findings(tmp_path, WORLD, "NP011", Settings(select=("NP011",)))
    assert len(found) == 2 and all(f.severity == "error" for f in found)


def test_np011_follows_ipblock_pods(tmp_path):
    text = docs(TENANTS,
                policy("db-in", "podSelector: {matchLabels: {app: db}}\ningress:\n- from: [{ipBlock: {cidr: 198.18.0.16/28}}]"),
                policy("out", "podSelector: {}\negress: [{}]", ns="ops"))
    assert findings(tmp_path, text, "NP011", Settings(tenant_label="team"))
    assert not findings(tmp_path, text, "NP011", Settings(tenant_label="team", ipblock_pods=False))
