"""Background jobs of a node (delivery, evidence push, checkpoints and witnessing, legal
clocks, directory and matching syncs), each on the one `Periodic` base; those that can be
woken early get a `Wakeup` from `run()`. Each reaches peers through a `PeerClient`."""
