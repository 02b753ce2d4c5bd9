"""``make chaos``: the demo under a steady load while a seeded schedule of faults hits it, then a
ledger of every accepted task checked against the store, and the run drawn (Jepsen's way)."""
