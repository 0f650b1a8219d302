"""Layer 0: the names, units, labels and constants every other part shares. Imports nothing of dshub."""
