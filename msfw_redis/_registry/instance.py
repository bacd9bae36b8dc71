"""The public ``ServiceInstance`` model and the checks on what an instance advertises.

A registered instance is stored in Redis as a JSON record (see ``_registry``); discovery
turns each record, plus its heartbeat deadline, suspect mark and probe state, into one
frozen :class:`ServiceInstance`.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._store.keys import canonical_service_name

__all__ = [
    "MAX_INSTANCE_ID_LENGTH",
    "MAX_METADATA_BYTES",
    "InstanceStatus",
    "Protocol",
    "ServiceInstance",
    "build_instance",
    "default_instance_id",
    "validate_advertised_host",
    "validate_instance_id",
    "validate_metadata",
]

MAX_INSTANCE_ID_LENGTH = 200
#: Largest JSON encoding of an instance's metadata, in bytes. Discovery ships every
#: record on every change, so metadata is for labels, not payloads.
MAX_METADATA_BYTES = 16 * 1024

Protocol = Literal["http", "https"]

#: ``healthy``: heartbeats current and health probes passing (or never probed).
#: ``recovering``: was unhealthy; probes pass again but not yet enough of them.
#: ``unhealthy``: health probes fail. ``suspect``: missed its heartbeat deadline but is
#: kept by self-preservation (see ``_registry``).
InstanceStatus = Literal["healthy", "recovering", "unhealthy", "suspect"]


class ServiceInstance(BaseModel):
    """One instance of a service as discovery sees it.

    Attributes:
        name: the service's name.
        host: the advertised host name or IP address.
        port: the TCP port.
        protocol: ``"http"`` or ``"https"``.
        status: ``"healthy"``, ``"recovering"``, ``"unhealthy"`` or ``"suspect"``.
        version: the version the instance registered with, if any.
        metadata: free-form JSON labels given at registration.
        instance_id: unique within the service; defaults to ``host:port``.
        last_heartbeat: Unix time in seconds (Redis server clock) of the last heartbeat,
            as of the discovery read that produced this object; ``None`` for external
            instances, which do not heartbeat.
        weight: relative share of traffic under the ``weighted`` strategy (``0`` drains).
        health_check_path: the path the health monitor probes; ``None`` means a TCP
            connect check.
        external: registered by ``register_external_service``: never expires by
            heartbeat, stays until deregistered.
        url: ``protocol://host:port`` (IPv6 hosts in brackets).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "http"
    status: InstanceStatus = "healthy"
    version: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    instance_id: str
    last_heartbeat: float | None = None
    weight: int = Field(default=1, ge=0)
    health_check_path: str | None = None
    external: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        """``protocol://host:port``, with an IPv6 host in brackets."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.protocol}://{host}:{self.port}"

    @property
    def is_healthy(self) -> bool:
        """True when ``status`` is ``"healthy"``."""
        return self.status == "healthy"


def validate_advertised_host(host: object) -> str:
    """Return ``host`` if other services can call it, else raise :class:`ConfigurationError`.

    Wildcard bind addresses (``0.0.0.0``, ``::``) are refused: they tell a server to
    listen on every interface, but nobody can connect *to* them.
    """
    if not isinstance(host, str) or not host.strip():
        raise ConfigurationError(
            f"invalid host {host!r}: expected a non-empty host name or IP address", field="host"
        )
    bare = host.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if any(ch.isspace() for ch in bare) or "/" in bare:
            raise ConfigurationError(
                f"invalid host {host!r}: a host name must not contain whitespace or '/'",
                field="host",
            ) from None
        return bare
    if address.is_unspecified:
        raise ConfigurationError(
            f"invalid host {host!r}: this is a wildcard bind address, not one another "
            "service can connect to; advertise a routable host name or IP (for example the "
            "pod or machine IP) instead",
            field="host",
        )
    return str(address)


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if it is a non-empty string of printable, non-space characters."""
    if not isinstance(instance_id, str) or not instance_id:
        raise ConfigurationError(
            f"invalid instance_id {instance_id!r}: expected a non-empty string",
            field="instance_id",
        )
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise ConfigurationError(
            f"invalid instance_id {instance_id[:40]!r}...: at most "
            f"{MAX_INSTANCE_ID_LENGTH} characters allowed",
            field="instance_id",
        )
    if any(ch.isspace() or not ch.isprintable() for ch in instance_id):
        raise ConfigurationError(
            f"invalid instance_id {instance_id!r}: must not contain whitespace or control "
            "characters",
            field="instance_id",
        )
    return instance_id


def validate_metadata(metadata: object) -> dict[str, Any]:
    """Return ``metadata`` as a dict if it is JSON-serialisable and small enough."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise ConfigurationError(
            "invalid metadata: expected a dict with string keys", field="metadata"
        )
    try:
        encoded = json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"invalid metadata: not JSON-serialisable ({exc})", field="metadata"
        ) from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise ConfigurationError(
            f"invalid metadata: {len(encoded.encode())} bytes as JSON, at most "
            f"{MAX_METADATA_BYTES} allowed",
            field="metadata",
        )
    return dict(metadata)


def default_instance_id(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port`` for IPv6): a restarted process replaces its old entry."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def build_instance(
    service_name: str,
    host: str,
    port: int,
    protocol: str,
    version: str | None,
    health_check_path: str | None,
    metadata: dict[str, Any] | None,
    weight: int,
    instance_id: str | None,
    *,
    external: bool,
) -> ServiceInstance:
    """Validate what a registration advertises; errors name the field."""
    try:
        service = canonical_service_name(service_name)
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="service_name") from None
    advertised = validate_advertised_host(host)
    labels = validate_metadata(metadata)
    if health_check_path is not None and not health_check_path.startswith("/"):
        raise ConfigurationError(
            f"invalid health_check_path {health_check_path!r}: must start with '/'",
            field="health_check_path",
        )
    try:
        return ServiceInstance(
            name=service,
            host=advertised,
            port=port,
            protocol=protocol,  # type: ignore[arg-type]
            version=version,
            metadata=labels,
            instance_id=validate_instance_id(instance_id or default_instance_id(advertised, port)),
            weight=weight,
            health_check_path=health_check_path,
            external=external,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(
            f"invalid {field} {first.get('input')!r}: {first['msg']}", field=field
        ) from None
