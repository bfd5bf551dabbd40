"""Everything in MLAX that does I/O: the node, its storage, the officer SDK and the CLI."""
