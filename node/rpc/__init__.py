"""The node's gRPC layer: the two servicers (federation.py, officer.py), who may call
them (auth.py), and the interceptors every call passes (errors.py, limits.py)."""
