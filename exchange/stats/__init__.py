"""Differentially private statistics releases (issue 16; ADR 0015), the pure part.

No I/O and no randomness: the node gathers plain facts (`facts`), the tables turn them
into true counts and sums over fixed cells (`tables`), the node adds OpenDP's noise with
the scales `release.plan` states, and `release` suppresses small cells on the noisy
values, writes the canonical document with every parameter of the guarantee, checks the
yearly budget (`accountant`), exports CSV/JSON with HTCDS/CTDC column names (`export`)
and combines several agencies' releases into a federation table (`combine`).
"""
