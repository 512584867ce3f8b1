"""The engine: runs tasks and flows on hosts (see docs/internals.rst for the layers)."""

from .execute import execute
from .flowstate import FlowState, current_flow
from .run import Run, current_run

__all__ = ["Run", "execute", "current_run", "current_flow", "FlowState"]
