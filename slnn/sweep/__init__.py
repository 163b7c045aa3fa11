"""Sweeps: the grid (``grid``), the launching side (``orchestrator``), the job side (``worker``)
and the ledger both sides share (``ledger``)."""
