"""The Service checks (NP013-NP017): each fires on a case, stays silent on a near miss, points at the line."""

from __future__ import annotations

from support.lintkit import WORLD, docs, findings, line_of, policy

from netpol.lint import Settings


def service(spec: str, name: str = "web", ns: str = "shop") -> str:
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n"


WEB_SVC = service("""\
selector: {app: web}
clusterIP: 198.18.100.10
ports: [{name: http, port: 80, targetPort: http}]""")


def only(tmp_path, text, code):
    return findings(tmp_path, text, code)


def test_np013_service_port_in_a_rule(tmp_path):
    text = docs(WORLD, WEB_SVC, policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - ports: [{port: 80}]  # HERE
        """))
    [f] = only(tmp_path, text, "NP013")
    assert f.line == line_of(text, "# HERE")
    assert "port TCP/80 is Service shop/web's port http; its pods receive on 8080 (http) after DNAT" in f.message


def test_np013_egress_and_near_misses(tmp_path):
    egress = policy("client", """\
        podSelector: {}
        policyTypes: [Egress]
        egress:
        - to: [{namespaceSelector: {matchLabels: {team: shop}}}]
          ports: [{port: 80}]  # HERE
        """, ns="ops")
    text = docs(WORLD, WEB_SVC, egress)
    [f] = only(tmp_path, text, "NP013")
    assert f.line == line_of(text, "# HERE")
    both = policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - ports: [{port: 80}, {port: 8080}]
        """)
    assert not only(tmp_path, docs(WORLD, WEB_SVC, both), "NP013")  # the target port is allowed too
    other = policy("db", """\
        podSelector: {matchLabels: {app: db}}
        ingress:
        - ports: [{port: 80}]
        """)
    assert not only(tmp_path, docs(WORLD, WEB_SVC, other), "NP013")  # the Service does not select db


def test_np014_ipblock_over_a_service_address(tmp_path):
    text = docs(WORLD, WEB_SVC, policy("client", """\
        podSelector: {}
        policyTypes: [Egress]
        egress:
        - to: [{ipBlock: {cidr: 198.18.100.0/24}}]  # HERE
        """, ns="ops"))
    [f] = only(tmp_path, text, "NP014")
    assert f.line == line_of(text, "# HERE") and "covers 198.18.100.10, an address of Service shop/web" in f.message
    near = text.replace("198.18.100.0/24}}]", "198.18.100.0/24, except: [198.18.100.0/28]}}]")
    assert not only(tmp_path, near, "NP014")


NODEPORT = service("""\
type: NodePort
selector: {app: web}
ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]""")


def test_np015_outside_clients_behind_masquerade(tmp_path):
    text = docs(WORLD, NODEPORT, policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress:
        - from: [{ipBlock: {cidr: 203.0.113.0/24}}]  # HERE
        """))
    [f] = only(tmp_path, text, "NP015")
    assert f.line == line_of(text, "# HERE") and "enters on the backend's node" in f.message
    local = text.replace("type: NodePort", "type: NodePort\n  externalTrafficPolicy: Local")
    assert not only(tmp_path, local, "NP015")


def test_np016_named_target_port_some_pods_lack(tmp_path):
    svc = service("""\
selector: {app: web}
ports: [{name: http, port: 80, targetPort: metrics}]  # HERE""")
    text = docs(WORLD, svc)
    [f] = only(tmp_path, text, "NP016")
    assert f.line == line_of(text, "# HERE") and "shop/web" in f.message and "no TCP port of that name" in f.message
    assert not only(tmp_path, docs(WORLD, WEB_SVC), "NP016")


def test_np017_duplicate_service_is_a_warning_and_other_commands_refuse(tmp_path):
    text = docs(WORLD, WEB_SVC, WEB_SVC)
    [f] = only(tmp_path, text, "NP017")
    assert f.severity == "warning" and "duplicate Service shop/web" in f.message
    assert not [x for x in findings(tmp_path, text) if x.code == "NP000"]
    assert not findings(tmp_path, text, "NP017", Settings(select=("NP013",)))
