"""Named builders: the store, create/append/leave rules, platform to node planning."""
