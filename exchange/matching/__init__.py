"""Privacy-preserving victim matching, pure: no network, database or file I/O.

- `records`: the CSV columns, `VictimRecord`, `VictimQuery`, `PartialDate`, validation.
- `normalise`: any script to comparable ASCII name parts.
- `tokens`: the fuzzy match tokens a record publishes and a query seeks.
- `oprf`: RFC 9497 OPRF(ristretto255, SHA-512), mode 0, over libsodium.
- `score`: the shipped thresholds, matched token kinds to a coarse `Band`.

The node (`node.services.matching`) stores, syncs, rate-limits and ledgers; docs/matching.md
gives the threat model and the parameters.
"""
