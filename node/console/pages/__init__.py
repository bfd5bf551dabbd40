"""The console's pages, one module per area; each adds its routes with `console.page`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.console.app import Console


def register(console: Console) -> None:
    from node.console.pages import audit, cases, evidence, matching, me, messages, stats

    for module in (cases, evidence, messages, matching, audit, stats, me):
        module.register(console)
