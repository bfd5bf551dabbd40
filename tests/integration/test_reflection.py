"""gRPC server reflection answers under its stable name (grpc.reflection.v1, what current
grpcurl and grpc-js ask) as well as under v1alpha, on both listeners."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

if TYPE_CHECKING:
    from conftest import LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

NAMES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")


def _ask(
    channel: grpc.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (answer,) = list(call(iter([request]), timeout=10))
    return answer


@pytest.mark.parametrize("service", NAMES)
def test_the_officer_listener_describes_itself(live: LiveFederation, service: str) -> None:
    channel = live.client("GB-NCA", "auditor")._channel
    listed = _ask(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {"mlax.v1.Officer", "grpc.health.v1.Health", *NAMES} <= names
    found = _ask(
        channel,
        service,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="mlax.v1.Officer"),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    services = {s.name for f in files for s in f.service}
    assert "Officer" in services


@pytest.mark.parametrize("service", NAMES)
def test_the_federation_listener_describes_itself(live: LiveFederation, service: str) -> None:
    channel = live.peer_channel("FR-OCRTEH", "GB-NCA")
    listed = _ask(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {"mlax.v1.Federation", "grpc.health.v1.Health", *NAMES} <= names
