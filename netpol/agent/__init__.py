"""The node agent (`netpol enforce --watch`): watch the API, keep this node's table in step.

watch (source) → store (pure, in memory) → debounce (reconcile) → snapshot → compile (updated for
the pods that changed) → render → apply, one transaction per batch. `run(cfg)` runs it as a process; `Agent(cfg)` is
the Python API.
"""

from netpol.agent.reconcile import BatchReport, Built
from netpol.agent.run import Agent, AgentConfig, node_from_env, run
from netpol.agent.store import Event, Snapshot, Store

__all__ = ["Agent", "AgentConfig", "BatchReport", "Built", "Event", "Snapshot", "Store", "node_from_env", "run"]
