"""`netpol lab`: a cluster snapshot as real network namespaces, to prove enforcement with packets.

topology builds and removes the namespaces, server answers inside them, probe connects for real.
"""

from netpol.errors import LabError
from netpol.lab.probe import Probe, probe
from netpol.lab.topology import (
    GATEWAY_V4,
    GATEWAY_V6,
    LabHost,
    LabState,
    down,
    lab_netns,
    load_state,
    up,
)

__all__ = [
    "GATEWAY_V4",
    "GATEWAY_V6",
    "LabError",
    "LabHost",
    "LabState",
    "Probe",
    "down",
    "lab_netns",
    "load_state",
    "probe",
    "up",
]
