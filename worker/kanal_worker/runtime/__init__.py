"""The engine: runs connectors' tasks, moves and commits records, tracks states."""
