"""``brigade chaos``: the whole stack under injected faults, judged by a ledger read from the truth."""
