"""pytest plugin for MockShift, the local mock of the VectorShift API. See plugin.py."""
from .plugin import MockShift, MockShiftServer

__all__ = ["MockShift", "MockShiftServer"]
