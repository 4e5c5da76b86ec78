"""netpol: Kubernetes NetworkPolicy, enforced with nftables and evaluated offline."""

__version__ = "0.1.0"
