"""The W&B mirror of the results store (the store stays the source of truth)."""
