"""Typed calls to ``lua/registry_*.lua``: which keys, which arguments, what the reply means.

State, per service (every key carries the ``{service}`` hash tag)::

    registry:members     zset  instance id -> heartbeat deadline, server ms (+inf: external)
    registry:records     hash  instance id -> JSON record (host, port, metadata, ttl ...)
    registry:tokens      hash  instance id -> fencing token of the current registration
    registry:suspects    hash  instance id -> server ms when self-preservation kept it
    registry:tombstones  zset  instance id -> server ms until which heartbeats are refused
    registry:revision    str   revision counter, bumped by every change discovery can see
    health:instances     hash  instance id -> probe state (written by health_report)

plus ``global:registry:services``, a zset of service names kept by separate single-key
calls (``registry_index``), never inside a per-service script.

Events, per service, on channels with the same hash tag (so a script publishes only in
its own slot: SPUBLISH on Cluster, PUBLISH elsewhere)::

    registry:events      "<service>\\n<revision>" at every revision bump
    health:events        "<service>\\n<seq>\\n<healthy>" at every flip of the service's health
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from msfw_redis._registry.instance import InstanceStatus, ServiceInstance
from msfw_redis._store.replies import reply_int, reply_list, reply_str

if TYPE_CHECKING:
    from collections.abc import Callable

    from msfw_redis._store.keys import KeySchema
    from msfw_redis._store.replies import Reply
    from msfw_redis._store.store import Store

__all__ = [
    "HeartbeatResult",
    "ListResult",
    "RegistryScripts",
    "ServiceKeys",
    "encode_record",
    "parse_instance",
]

logger = logging.getLogger("msfw_redis.registry")

#: registry_heartbeat / registry_deregister reply codes.
RENEWED = 1
UNKNOWN = 0
FENCED = -1


@dataclass(frozen=True, slots=True)
class ServiceKeys:
    """Every key of one service that the registry and the health monitor use."""

    members: str
    records: str
    tokens: str
    suspects: str
    tombstones: str
    revision: str
    health_instances: str
    health_service: str
    health_probe: str
    #: The service's pub/sub channels, in the slot of its keys (SPUBLISH on Cluster).
    registry_channel: str
    health_channel: str

    @classmethod
    def build(cls, keys: KeySchema, service: str) -> ServiceKeys:
        return cls(
            members=keys.key(service, "registry", "members"),
            records=keys.key(service, "registry", "records"),
            tokens=keys.key(service, "registry", "tokens"),
            suspects=keys.key(service, "registry", "suspects"),
            tombstones=keys.key(service, "registry", "tombstones"),
            revision=keys.key(service, "registry", "revision"),
            health_instances=keys.key(service, "health", "instances"),
            health_service=keys.key(service, "health", "service"),
            health_probe=keys.key(service, "health", "probe"),
            registry_channel=keys.channel(service, "registry"),
            health_channel=keys.channel(service, "health"),
        )

    @property
    def registry(self) -> list[str]:
        """KEYS[1..6] of the registry scripts, in their order."""
        return [
            self.members,
            self.records,
            self.tokens,
            self.suspects,
            self.tombstones,
            self.revision,
        ]


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """One heartbeat: ``code`` 1 renewed, 0 unknown (register again), -1 fenced (stop).

    ``deadline_ms`` is the new deadline in server ms (0 unless renewed, and for external
    instances).
    """

    code: int
    revision: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class ListResult:
    """One ``registry_list`` reply. ``instances`` is ``None`` when ``changed`` is False."""

    revision: int
    changed: bool
    evicted: int
    newly_suspect: int
    suspects: int
    preserving: bool
    now_ms: int
    instances: tuple[ServiceInstance, ...] | None
    #: Keys of another type (foreign or corrupt) the script deleted and read as absent.
    repaired: int = 0


#: How many logged unreadable records a registry remembers (then it forgets them all).
_UNREADABLE_CAP = 1024


def encode_record(instance: ServiceInstance, ttl_ms: int) -> str:
    """The JSON record stored for ``instance`` (``ttl_ms`` 0 for external instances)."""
    return json.dumps(
        {
            "host": instance.host,
            "port": instance.port,
            "protocol": instance.protocol,
            "version": instance.version,
            "health_check_path": instance.health_check_path,
            "weight": instance.weight,
            "metadata": instance.metadata,
            "ttl_ms": ttl_ms,
        },
        separators=(",", ":"),
    )


def _status(health: str, suspect: bool) -> InstanceStatus:
    state = health.split("|", 1)[0] if health else "healthy"
    if state == "unhealthy":
        return "unhealthy"
    if state == "recovering":
        return "recovering"
    return "suspect" if suspect else "healthy"


def parse_instance(
    service: str,
    instance_id: str,
    deadline: str,
    record: str,
    suspect: bool,
    health: str,
    logged: set[tuple[str, str, str]] | None = None,
) -> ServiceInstance | None:
    """A :class:`ServiceInstance` from one listed entry; ``None`` (logged) if corrupt.

    ``logged`` remembers the unreadable values already logged, so each stored value is
    logged once, not at every listing.
    """
    try:
        data: dict[str, Any] = json.loads(record)
        external = deadline in ("inf", "+inf")
        ttl_ms = int(data.get("ttl_ms", 0))
        last_beat = None if external else (int(float(deadline)) - ttl_ms) / 1000.0
        return ServiceInstance(
            name=service,
            host=data["host"],
            port=data["port"],
            protocol=data.get("protocol", "http"),
            status=_status(health, suspect),
            version=data.get("version"),
            metadata=data.get("metadata") or {},
            instance_id=instance_id,
            last_heartbeat=last_beat,
            weight=data.get("weight", 1),
            health_check_path=data.get("health_check_path"),
            external=external,
        )
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        # One corrupt record must not hide the service's other instances. It is read as
        # absent; the owner's next registration rewrites it.
        seen = (service, instance_id, record[:256])
        if logged is None or seen not in logged:
            if logged is not None:
                if len(logged) >= _UNREADABLE_CAP:
                    logged.clear()
                logged.add(seen)
            logger.warning(
                "skipping unreadable registry record %s/%s (treated as absent): %s",
                service, instance_id, exc,
            )  # fmt: skip
        return None


def _parse_list(
    service: str, reply: list[Reply], logged: set[tuple[str, str, str]] | None = None
) -> ListResult:
    changed = reply_int(reply[1]) == 1
    instances: tuple[ServiceInstance, ...] | None = None
    # The repaired count follows the instances (absent from a script older than it).
    tail = 8 + reply_int(reply[7]) * 5
    repaired = reply_int(reply[tail]) if len(reply) > tail else 0
    if repaired:
        logger.warning(
            "registry keys of %s held another type (foreign or corrupt): %d deleted and "
            "read as absent; the next writes re-create them",
            service, repaired,
        )  # fmt: skip
    if changed:
        parsed = []
        for i in range(reply_int(reply[7])):
            base = 8 + i * 5
            inst = parse_instance(
                service,
                reply_str(reply[base]),
                reply_str(reply[base + 1]),
                reply_str(reply[base + 2]),
                reply_int(reply[base + 3]) == 1,
                reply_str(reply[base + 4]),
                logged,
            )
            if inst is not None:
                parsed.append(inst)
        instances = tuple(parsed)
    return ListResult(
        revision=reply_int(reply[0]),
        changed=changed,
        evicted=reply_int(reply[2]),
        newly_suspect=reply_int(reply[3]),
        suspects=reply_int(reply[4]),
        preserving=reply_int(reply[5]) == 1,
        now_ms=reply_int(reply[6]),
        instances=instances,
        repaired=repaired,
    )


class RegistryScripts:
    """Stateless wrappers, one per registry script, for one store.

    Args:
        store: the store to run the scripts on.
        retention_ms: expiry set on every key the scripts write.
        now_ms: returns the server time (ms) to pass to scripts; 0 lets each script
            read ``TIME``. Tests inject a clock here.
    """

    def __init__(self, store: Store, *, retention_ms: int, now_ms: Callable[[], int]) -> None:
        self._unreadable_logged: set[tuple[str, str, str]] = set()
        self.store = store
        self.retention_ms = retention_ms
        self.now_ms = now_ms
        self.index_key = store.keys.global_key("registry", "services")
        self._keys: dict[str, ServiceKeys] = {}

    def keys(self, service: str) -> ServiceKeys:
        """The keys of ``service`` (validated and built once, then reused)."""
        keys = self._keys.get(service)
        if keys is None:
            keys = self._keys[service] = ServiceKeys.build(self.store.keys, service)
        return keys

    async def register(
        self, service: str, instance_id: str, token: str, ttl_ms: int, record: str
    ) -> int:
        """Add or replace an instance (``ttl_ms`` 0: external); returns the new revision."""
        keys = self.keys(service)
        reply = reply_list(
            await self.store.run(
                "registry_register",
                keys.registry,
                [
                    self.now_ms(), instance_id, token, ttl_ms, record, self.retention_ms,
                    keys.registry_channel, service,
                ],
            )
        )  # fmt: skip
        return reply_int(reply[0])

    async def heartbeat(
        self, service: str, instance_id: str, token: str, ttl_ms: int
    ) -> HeartbeatResult:
        """Renew an instance's lease, fenced by ``token``."""
        keys = self.keys(service)
        reply = reply_list(
            await self.store.run(
                "registry_heartbeat",
                keys.registry,
                [
                    self.now_ms(), instance_id, token, ttl_ms, self.retention_ms,
                    keys.registry_channel, service,
                ],
            )
        )  # fmt: skip
        return HeartbeatResult(reply_int(reply[0]), reply_int(reply[1]), reply_int(reply[2]))

    async def deregister(
        self, service: str, instance_id: str, token: str, tombstone_ms: int
    ) -> tuple[int, int]:
        """Remove an instance (``token`` '' = whoever owns it); returns (code, revision)."""
        keys = self.keys(service)
        reply = reply_list(
            await self.store.run(
                "registry_deregister",
                [*keys.registry, keys.health_instances],
                [
                    self.now_ms(), instance_id, token, tombstone_ms, self.retention_ms,
                    keys.registry_channel, service,
                ],
            )
        )  # fmt: skip
        return reply_int(reply[0]), reply_int(reply[1])

    async def list_instances(
        self,
        service: str,
        *,
        known_revision: int,
        share_permille: int,
        hold_ms: int,
        min_instances: int,
    ) -> ListResult:
        """Reap and list ``service``; instances only when the revision differs from known."""
        keys = self.keys(service)
        reply = reply_list(
            await self.store.run(
                "registry_list",
                [*keys.registry, keys.health_instances],
                [
                    self.now_ms(), known_revision, share_permille, hold_ms, min_instances,
                    self.retention_ms, keys.registry_channel, service,
                ],
            )
        )  # fmt: skip
        return _parse_list(service, reply, self._unreadable_logged)

    async def touch_index(self, service: str) -> None:
        """Record ``service`` in the global index (a separate single-key call)."""
        await self.store.run(
            "registry_index", [self.index_key], [self.now_ms(), service, self.retention_ms]
        )

    async def services(self) -> list[str]:
        """Every name in the global index, sorted."""
        reply = await self.store.run(
            "registry_services", [self.index_key], [self.now_ms(), self.retention_ms]
        )
        return [reply_str(name) for name in reply_list(reply)]
