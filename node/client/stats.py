"""The officer SDK for statistics releases (docs/statistics.md).

stats = StatsClient(OfficerClient.from_bundle(Path("alice.json"), b"passphrase"))
stats.preview("2026-01-01", "2026-12-31")   # tables, scales, epsilon; nothing spent
draft = stats.draft("2026-01-01", "2026-12-31")  # noise drawn, budget charged
StatsClient(supervisor).approve(draft.release_id)  # four-eyes: another supervisor
stats.get(draft.release_id).document            # the published JSON
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange._proto.mlax.v1 import statistics_pb2 as spb
from exchange._proto.mlax.v1 import statistics_pb2_grpc as sgrpc
from exchange.encoding import now_ms, sha256
from exchange.errors import InvalidFieldError
from exchange.stats.release import approval_message
from node.client.officer import OfficerClient


@dataclass(frozen=True)
class BudgetYear:
    year: int
    spent: float
    budget: float

    @property
    def left(self) -> float:
        return max(0.0, self.budget - self.spent)


@dataclass(frozen=True)
class ReleaseSummary:
    release_id: str
    period_start: str
    period_end: str
    epsilon: float
    state: str
    drafted_by: str
    drafted_at: int
    approved_by: str
    approved_at: int
    digest: str
    cells_released: int
    cells_suppressed: int

    @classmethod
    def from_proto(cls, m: spb.StatsReleaseSummary) -> ReleaseSummary:
        return cls(
            release_id=m.release_id,
            period_start=m.period_start,
            period_end=m.period_end,
            epsilon=m.epsilon,
            state=m.state,
            drafted_by=m.drafted_by,
            drafted_at=m.drafted_at,
            approved_by=m.approved_by,
            approved_at=m.approved_at,
            digest=bytes(m.digest).hex(),
            cells_released=m.cells_released,
            cells_suppressed=m.cells_suppressed,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReleaseView:
    """A release (or a preview: `summary` None) with its document and the budget."""

    summary: ReleaseSummary | None
    document: dict[str, Any]
    document_bytes: bytes
    budget: tuple[BudgetYear, ...]

    @classmethod
    def from_proto(cls, v: spb.StatsReleaseView) -> ReleaseView:
        body = bytes(v.document)
        return cls(
            summary=ReleaseSummary.from_proto(v.summary) if v.HasField("summary") else None,
            document=json.loads(body) if body else {},
            document_bytes=body,
            budget=tuple(BudgetYear(b.year, b.spent, b.budget) for b in v.budget),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_json() if self.summary else None,
            "document": self.document,
            "budget": [b.__dict__ for b in self.budget],
        }


class StatsClient:
    """Statistics calls of one officer's connection to their node."""

    def __init__(self, client: OfficerClient) -> None:
        self.client = client
        self._stub = sgrpc.StatisticsStub(client._channel)

    def _view(self, method: Any, request: Any) -> ReleaseView:
        return ReleaseView.from_proto(self.client._call(method, request))

    def preview(self, start: str, end: str) -> ReleaseView:
        return self._view(self._stub.Preview, spb.StatsPeriodRequest(start=start, end=end))

    def draft(self, start: str, end: str) -> ReleaseView:
        return self._view(self._stub.Draft, spb.StatsPeriodRequest(start=start, end=end))

    def get(self, release_id: str) -> ReleaseView:
        return self._view(self._stub.Get, spb.StatsGetRequest(release_id=release_id))

    def releases(self, limit: int = 50) -> list[ReleaseSummary]:
        resp: spb.StatsListResponse = self.client._call(
            self._stub.List, spb.StatsListRequest(limit=limit)
        )
        return [ReleaseSummary.from_proto(r) for r in resp.releases]

    def periods(self, limit: int = 50) -> list[tuple[str, str]]:
        """The periods (first day, last day) the node can build a federation table for:
        those of its final releases and of the releases peers sent it, newest first."""
        resp: spb.StatsListResponse = self.client._call(
            self._stub.List, spb.StatsListRequest(limit=limit)
        )
        return [(p.start, p.end) for p in resp.periods]

    def approve(self, release_id: str) -> ReleaseView:
        """Supervisor: sign the release as this client read it (four-eyes); it is final."""
        view = self.get(release_id)
        if view.summary is None or view.summary.state != "draft":
            raise InvalidFieldError(f"Release {release_id} is not a draft waiting for approval.")
        digest = sha256(view.document_bytes)
        if digest.hex() != view.summary.digest:
            raise InvalidFieldError(f"Release {release_id}'s document does not match its digest.")
        key = serialization.load_pem_private_key(self.client.credential.private_key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidFieldError("This credential's key cannot sign approvals.")
        at = now_ms()
        message = approval_message(release_id, digest, self.client.credential.officer, at)
        req = spb.StatsApproveRequest(
            release_id=release_id,
            at=at,
            digest=digest,
            signature=key.sign(message, ec.ECDSA(hashes.SHA256())),
        )
        return self._view(self._stub.Approve, req)

    def federation(self, start: str, end: str) -> dict[str, Any]:
        """The federation table of the period from the releases the node holds (its own
        final one and those peers sent it)."""
        view: spb.StatsFederationView = self.client._call(
            self._stub.Federation, spb.StatsPeriodRequest(start=start, end=end)
        )
        table: dict[str, Any] = json.loads(bytes(view.table))
        return table
