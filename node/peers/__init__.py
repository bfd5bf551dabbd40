"""How a node reaches its peers: mutual-TLS channels pinned to each peer's directory entry."""
