"""`make chaos`: a seeded soak of the production stack under several faults at once (docs/guarantees.md#chaos)."""
