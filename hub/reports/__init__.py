"""Coordinators' figures: the summary, its CSV, the board (SQL over metadata only)."""
