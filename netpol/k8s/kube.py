"""Read Namespaces, Pods, NetworkPolicies, Services, EndpointSlices and Nodes from a live cluster through
the official client."""

from __future__ import annotations

from netpol.errors import NetpolError
from netpol.k8s.source import RawObject, Source

_LISTS = (("Namespace", "CoreV1Api", "list_namespace"), ("Pod", "CoreV1Api", "list_pod_for_all_namespaces"),
          ("NetworkPolicy", "NetworkingV1Api", "list_network_policy_for_all_namespaces"),
          ("Service", "CoreV1Api", "list_service_for_all_namespaces"),
          ("EndpointSlice", "DiscoveryV1Api", "list_endpoint_slice_for_all_namespaces"),
          ("Node", "CoreV1Api", "list_node"))


def api_client(kubeconfig: str | None, context: str | None):
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    try:
        if kubeconfig or context:
            return config.new_client_from_config(config_file=kubeconfig, context=context)
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except ConfigException:
            return config.new_client_from_config()
    except Exception as exc:  # noqa: BLE001  (a broken kubeconfig raises YAML, OS, type and config errors)
        raise NetpolError(f"no input: give -f/--filename, or a cluster through --kubeconfig/--context "
                          f"({exc})") from None


def load_cluster_objects(kubeconfig: str | None, context: str | None) -> list[RawObject]:
    from kubernetes import client
    api = api_client(kubeconfig, context)
    out: list[RawObject] = []
    for kind, group, call in _LISTS:
        try:
            listing = getattr(getattr(client, group)(api), call)()
        except Exception as exc:  # the client raises many types; all mean "cannot read"
            raise NetpolError(f"cannot list {kind}s from the cluster: {exc}") from None
        for item in api.sanitize_for_serialization(listing).get("items", []):
            item["kind"] = kind
            meta = item.get("metadata", {})
            where = "/".join(filter(None, (meta.get("namespace"), meta.get("name"))))
            out.append(RawObject(item, Source(f"cluster:{kind}/{where}", 0)))
    return out
