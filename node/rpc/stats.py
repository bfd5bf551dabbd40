"""The statistics service (`mlax.v1.Statistics`), on the officer listener beside
`mlax.v1.Officer`, authorized by the same one authorization point (node.rpc.auth).

docs/protocol.md 11.7 publishes its role table (tests/node/rpc/test_rpc_auth.py checks it
against the @allow declarations here): officers draft, a supervisor other than
the drafter approves (four-eyes), and releases, being published figures, are readable by
auditors too.
"""

from __future__ import annotations

import grpc

from exchange._proto.mlax.v1 import statistics_pb2 as spb
from exchange._proto.mlax.v1 import statistics_pb2_grpc as sgrpc
from exchange.policy import Role
from node.rpc.auth import OfficerAuth, allow, declared_roles, enforce_roles
from node.rpc.limits import client_certificate
from node.services.messages import Officer
from node.services.stats import StatsDesk

STATS_SERVICE = "mlax.v1.Statistics"
DESCRIPTOR = spb.DESCRIPTOR.services_by_name["Statistics"]
_DRAFTERS = (Role.OFFICER, Role.SUPERVISOR)
_READERS = (Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR)


@enforce_roles(DESCRIPTOR)
class StatsService(sgrpc.StatisticsServicer):
    """Statistics calls: each is authorized by node.rpc.auth before its body runs."""

    def __init__(self, desk: StatsDesk) -> None:
        self.auth = OfficerAuth.for_db(declared_roles(StatsService), desk.core.db)
        self.desk = desk

    @allow(*_READERS)
    def Preview(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsPeriodRequest, context: grpc.ServicerContext
    ) -> spb.StatsReleaseView:
        return self.desk.preview(request)

    @allow(*_DRAFTERS)
    def Draft(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsPeriodRequest, context: grpc.ServicerContext
    ) -> spb.StatsReleaseView:
        return self.desk.draft(officer, request)

    # Four-eyes: a supervisor approves; StatsDesk refuses the release's own drafter.
    @allow(Role.SUPERVISOR)
    def Approve(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsApproveRequest, context: grpc.ServicerContext
    ) -> spb.StatsReleaseView:
        return self.desk.approve(officer, request, client_certificate(context) or b"")

    @allow(*_READERS)
    def List(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsListRequest, context: grpc.ServicerContext
    ) -> spb.StatsListResponse:
        return self.desk.list(request)

    @allow(*_READERS)
    def Get(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsGetRequest, context: grpc.ServicerContext
    ) -> spb.StatsReleaseView:
        return self.desk.get(request.release_id)

    @allow(*_READERS)
    def Federation(  # noqa: N802 - the service's method name
        self, officer: Officer, request: spb.StatsPeriodRequest, context: grpc.ServicerContext
    ) -> spb.StatsFederationView:
        return self.desk.federation(request)
