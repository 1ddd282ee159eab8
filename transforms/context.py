"""The run a stage is part of: one small frozen record, handed to each stage once.

Every row names its run and model; every stage counts into the same metrics and, in a
local run, the same live progress feed. Those three facts travel together here
instead of as loose constructor arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from transforms.metrics import StageMetrics


@dataclasses.dataclass(frozen=True)
class RunContext:
    """``run_id``: the ``run_id`` column and file-name stem; ``model_name``: the ``model``
    column; ``progress_path``: the local CLI's progress file (None on remote runners)."""

    run_id: str
    model_name: str
    progress_path: Optional[str] = None

    def metrics(self, stage: str) -> StageMetrics:
        """A stage's counters (build it in ``DoFn.setup``)."""
        return StageMetrics(stage, self.progress_path)
