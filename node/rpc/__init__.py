"""Cross-cutting pieces of the node's gRPC servicers (interceptors and their rules)."""
