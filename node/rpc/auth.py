"""Who is calling, and may they make this call: the one authorization point of the node.

Officer listener. Each officer call declares, once, next to its method, the roles that
may make it (`@allow(Role.OFFICER, Role.SUPERVISOR)`): the method gRPC calls runs
`OfficerAuth.authorize` first and hands the method body the authenticated `Officer`.
`enforce_roles(service)`, a class decorator on the servicer, collects the declarations
into the one role table and closes every method of the proto service that declares
nothing (including one the servicer does not implement): it is refused for every role.

`OfficerAuth.authorize` reads the caller's row on every call (SHA-256 of the client
certificate's SubjectPublicKeyInfo among the active officers), so a deactivation or a
demotion takes effect on the next call without reissuing credentials:

- no active officer with that key: UNAUTHENTICATED, counted as
  `mlax_messages_rejected_total{reason="unknown_officer"}`;
- a role the call does not allow: PERMISSION_DENIED "The <role> role may not call
  <call>.", counted as `{reason="role"}` and logged as `officer_refused` with the
  officer, role and call. Nothing is ledgered.

Federation listener. `peer_agency` names the agency whose pinned TLS key the client
certificate carries, or refuses the call (UNAUTHENTICATED).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor

from exchange.directory import Directory
from exchange.policy import Role
from node import metrics
from node.rpc.errors import UnauthenticatedError
from node.rpc.limits import client_certificate
from node.services.messages import Officer, PermissionDeniedError
from node.services.officers import ActiveOfficer, active_officer, pin_of
from node.storage.db import Database

log = structlog.get_logger("mlax.node")

S = TypeVar("S", bound="Authorizing")
T = TypeVar("T", bound=type)
P = ParamSpec("P")
R = TypeVar("R")

# The attributes `allow` marks a method with and `enforce_roles` marks a class with.
_ALLOWED = "__mlax_allowed_roles__"
_TABLE = "__mlax_role_table__"


class Authorizing(Protocol):
    """A servicer whose calls `OfficerAuth` authorizes."""

    auth: OfficerAuth


def allow(
    *roles: Role,
) -> Callable[[Callable[Concatenate[S, Officer, P], R]], Callable[Concatenate[S, P], R]]:
    """Declare the roles that may make the call this servicer method serves.

    The method is written `(self, officer, request, context)`; gRPC calls
    `(self, request, context)`, which authorizes the caller for the method's name
    (`self.auth.authorize`) and passes on the `Officer` it returns.
    """
    if not roles:
        raise TypeError("allow() needs a role; leave a call undeclared to close it.")

    def declare(fn: Callable[Concatenate[S, Officer, P], R]) -> Callable[Concatenate[S, P], R]:
        call = fn.__name__

        @functools.wraps(fn)
        def authorized(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return fn(self, self.auth.authorize(_context(args, kwargs), call), *args, **kwargs)

        setattr(authorized, _ALLOWED, frozenset(roles))
        return authorized

    return declare


def _context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> grpc.ServicerContext:
    # gRPC passes (request, context) positionally.
    context = kwargs["context"] if "context" in kwargs else args[-1]
    return cast("grpc.ServicerContext", context)


def enforce_roles(service: ServiceDescriptor) -> Callable[[T], T]:
    """Class decorator: the role table of a servicer of `service`, closed by default.

    Every method of the service that the class does not declare with `@allow`
    (including one it does not implement) is replaced by one that refuses every role;
    an `@allow` on a method the service does not have is an error. The class's instances
    authorize with an `OfficerAuth` built from `declared_roles(cls)`.
    """

    def wrap(cls: T) -> T:
        names = {m.name for m in service.methods}
        stray = sorted(
            name
            for name, value in vars(cls).items()
            if hasattr(value, _ALLOWED) and name not in names
        )
        if stray:
            raise TypeError(f"{cls.__name__}: {', '.join(stray)} not in {service.full_name}.")
        table: dict[str, frozenset[Role]] = {}
        for name in sorted(names):
            roles: frozenset[Role] = getattr(vars(cls).get(name), _ALLOWED, frozenset())
            table[name] = roles
            if not roles:
                setattr(cls, name, _closed(name))
        setattr(cls, _TABLE, MappingProxyType(table))
        return cls

    return wrap


def _closed(call: str) -> Callable[..., Any]:
    def closed(self: Authorizing, request: Any, context: grpc.ServicerContext) -> Any:
        self.auth.authorize(context, call)  # no role is allowed: this raises
        raise PermissionDeniedError(f"No role may call {call}.")

    closed.__name__ = closed.__qualname__ = call
    return closed


def declared_roles(cls: type) -> Mapping[str, frozenset[Role]]:
    """The roles each method of the class's service allows (empty: undeclared, closed)."""
    table: Mapping[str, frozenset[Role]] | None = vars(cls).get(_TABLE)
    if table is None:
        raise TypeError(f"{cls.__name__} is not decorated with enforce_roles.")
    return table


class OfficerAuth:
    """Authenticates an officer call's client certificate and checks the call's roles."""

    def __init__(
        self,
        roles: Mapping[str, frozenset[Role]],
        officer_of: Callable[[bytes], ActiveOfficer | None],
    ) -> None:
        self.roles = roles
        self._officer_of = officer_of

    @classmethod
    def for_db(cls, roles: Mapping[str, frozenset[Role]], db: Database) -> OfficerAuth:
        return cls(roles, lambda cert: active_officer(db, cert))

    def authorize(self, context: grpc.ServicerContext, call: str) -> Officer:
        """The calling officer, if their current role may make `call`; else a refusal."""
        cert = client_certificate(context)
        row = self._officer_of(cert) if cert else None
        if row is None:
            metrics.REJECTED.labels(reason="unknown_officer").inc()
            raise UnauthenticatedError("This credential is not an active officer here.")
        allowed = self.roles.get(call, frozenset())
        if row.role not in allowed:  # a Role is its value: "officer" in {Role.OFFICER}
            metrics.REJECTED.labels(reason="role").inc()
            log.warning("officer_refused", officer=row.name, role=row.role, call=call)
            raise PermissionDeniedError(f"The {row.role} role may not call {call}.")
        return Officer(row.name, row.role)


def peer_agency(directory: Directory, context: grpc.ServicerContext) -> str:
    """The agency whose pinned TLS key the calling peer's certificate carries."""
    cert = client_certificate(context)
    card = directory.agency_by_tls_pin(pin_of(cert)) if cert else None
    if card is None:
        metrics.REJECTED.labels(reason="unknown_peer").inc()
        log.warning("peer_refused", reason="tls_key_not_in_directory", peer=context.peer())
        raise UnauthenticatedError(
            "Your TLS key is not pinned for any agency in this node's directory."
        )
    return card.agency_id
