"""Several extraction processes on one store, launched by ``torchrun`` or ``accelerate launch``.

No process group is needed: each rank takes every ``world_size``-th question, writes its own
shards (``..._rank{r}_shard_NNNN``) under its own lock, and appends to the shared index under a
file lock, so the index is the merge. A rerun with any number of ranks resumes from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from extraction.store.layout import LOCK


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def file_prefix(self, prefix: str) -> str:
        return f"{prefix}_rank{self.rank}" if self.distributed else prefix

    @property
    def lock_name(self) -> str:
        return f"{LOCK}.rank{self.rank}" if self.distributed else LOCK

    def take(self, items: list) -> list:
        return items[self.rank :: self.world_size]


def current_rank() -> Rank:
    """The launcher's environment variables (both torchrun and accelerate set these)."""
    return Rank(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
