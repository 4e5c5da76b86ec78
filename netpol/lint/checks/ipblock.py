"""ipBlocks that cover pod addresses: where implementations disagree."""

from __future__ import annotations

from collections.abc import Iterator

from netpol.lint.context import PEERS_FIELD, Context
from netpol.lint.registry import Hit, check


@check("NP009", "ipblock-covers-pods", "warning", "An ipBlock covers pod addresses in the input.")
def ipblock_covers_pods(ctx: Context) -> Iterator[Hit]:
    """
    Whether an ipBlock peer matches traffic of pods whose addresses it contains differs between
    implementations: some match pod traffic by address (netpol does, as the upstream e2e suite expects,
    unless `--ipblock-pods false`), others match only traffic from outside the cluster, and source
    addresses may be rewritten on the way. A policy that relies on either behaviour is fragile: select
    pods with podSelector/namespaceSelector, and cut the pod CIDR out of the ipBlock with `except`.

        egress:
        - to:
          - ipBlock: {cidr: 0.0.0.0/0}     # covers every pod too; add except: [<pod CIDR>]
    """
    idx = ctx.index
    for pol, direction, i, _, j, block in ctx.ip_block_peers():
        covered = idx.ip_block(block) & idx.policed
        if not covered:
            continue
        n = covered.bit_count()
        yield ctx.at_rule(pol, direction, i, PEERS_FIELD[direction], j, "ipBlock", "cidr"), \
            f"{direction} rule {i} ipBlock {block.describe()} covers the address of {n} " \
            f"pod{'s' if n != 1 else ''} ({idx.keys(covered)}); implementations differ on whether " \
            f"ipBlock matches pod traffic"
