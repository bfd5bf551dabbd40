"""Background jobs of a node (delivery, evidence push, checkpoints and witnessing, legal
clocks, directory and matching syncs), each on the one `Periodic` base or its own loop."""
