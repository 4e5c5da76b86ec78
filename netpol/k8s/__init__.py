"""The load stage as commands use it: files or the live cluster, to a Cluster model."""

from __future__ import annotations

from netpol.errors import InputError, NetpolError
from netpol.k8s.load import load_paths
from netpol.k8s.model import Cluster
from netpol.k8s.parse import build_cluster


def load_cluster(filenames: list[str] | None, kubeconfig: str | None = None,
                 context: str | None = None, allow_empty: bool = False) -> Cluster:
    if filenames:
        raws = load_paths(filenames)
        if not raws and not allow_empty:  # as kubectl: an answer about nothing is not an answer
            raise InputError("no Kubernetes objects in the input (files ending .yaml, .yml or .json)",
                             ", ".join(filenames))
        return build_cluster(raws)
    if kubeconfig is None and context is None:
        import os
        if not os.environ.get("KUBECONFIG") and not os.path.exists(os.path.expanduser("~/.kube/config")) \
                and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise NetpolError("no input: give -f/--filename PATH, or a cluster with --kubeconfig/--context")
    from netpol.k8s.kube import load_cluster_objects
    return build_cluster(load_cluster_objects(kubeconfig, context))
