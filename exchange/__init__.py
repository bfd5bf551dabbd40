"""The MLAX protocol, sans I/O: envelopes, the federation directory, receipts, ledger math.

Nothing in this package touches the network, the disk or a database. Functions take
bytes and typed objects, and return typed objects or raise an `exchange.errors.MlaxError`.
"""
