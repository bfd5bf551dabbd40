"""Domain operations of a node: messages, cases, evidence, matching, witnessing, officers,
trust. Each takes the narrow pieces it needs (database, identity, directory, peers); the
RPC layer (`node.rpc`) calls them, and the workers (`node.workers`) run them on a clock."""
