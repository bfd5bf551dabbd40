"""How a node reaches its peers: `client.PeerClient` (every federation call a node makes),
over mutual-TLS channels pinned to each peer's directory entry (`channels.PeerChannels`)."""
