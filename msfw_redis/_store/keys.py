"""Every Redis key and channel name that msfw_redis uses is built here, and only here.

Schema::

    <prefix>:v1:{<service>}:<component>:<rest...>     per-service state
    <prefix>:v1:global:<component>:<rest...>          cross-service indexes (single-key ops)

The ``{<service>}`` hash tag puts every key that one script call touches into one
Redis Cluster slot, so every script also runs on Cluster. Views across services
("all breakers", "all services") are kept in global keys and are updated by
separate single-slot calls, never by one multi-slot script. ``v1`` versions the
layout: a future incompatible layout gets ``v2`` and never reads old keys.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "MAX_SERVICE_NAME_LENGTH",
    "KeySchema",
    "canonical_service_name",
    "validate_service_name",
]

DEFAULT_KEY_PREFIX = "msfw"
MAX_SERVICE_NAME_LENGTH = 200
_SCHEMA_VERSION = "v1"


def _bad_char(ch: str) -> bool:
    # Braces would break the Cluster hash tag; whitespace and control characters make
    # keys ambiguous in logs and in the CLI.
    return ch in "{}" or ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}


def validate_service_name(name: object, *, what: str = "service name") -> str:
    """Return ``name`` if it is a valid service name, else raise ``ValueError`` naming it.

    A valid name is a non-empty ``str`` of at most 200 characters with no control
    characters, braces or whitespace.
    """
    if not isinstance(name, str):
        raise ValueError(f"invalid {what} {name!r}: expected a string, got {type(name).__name__}")
    if not name:
        raise ValueError(f"invalid {what} {name!r}: must not be empty")
    if len(name) > MAX_SERVICE_NAME_LENGTH:
        raise ValueError(
            f"invalid {what} {name[:40]!r}...: {len(name)} characters, "
            f"at most {MAX_SERVICE_NAME_LENGTH} allowed"
        )
    for ch in name:
        if _bad_char(ch):
            raise ValueError(
                f"invalid {what} {name!r}: must not contain braces, whitespace or "
                f"control characters (found {ch!r})"
            )
    return name


def canonical_service_name(name: object, *, what: str = "service name") -> str:
    """The canonical form of a valid service name: ``_`` becomes ``-``.

    ``order_service`` and ``order-service`` name the same service everywhere (breakers,
    cache, registry, health, settings, metrics, CLI), so every key is built from this
    form. Raises ``ValueError`` as :func:`validate_service_name` does.
    """
    return validate_service_name(name, what=what).replace("_", "-")


def _validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"invalid key_prefix {prefix!r}: must be a non-empty string")
    for ch in prefix:
        if _bad_char(ch):
            raise ValueError(
                f"invalid key_prefix {prefix!r}: must not contain braces, whitespace or "
                f"control characters (found {ch!r})"
            )
    return prefix


@dataclass(frozen=True, slots=True)
class KeySchema:
    """Builds key and channel names under one prefix."""

    prefix: str = DEFAULT_KEY_PREFIX

    def __post_init__(self) -> None:
        _validate_prefix(self.prefix)

    def key(self, service: str, component: str, *rest: str) -> str:
        """A per-service key: ``<prefix>:v1:{<service>}:<component>:<rest...>``."""
        # Canonical here so that no caller can build a second key for the same service.
        canonical = canonical_service_name(service)
        parts = [self.prefix, _SCHEMA_VERSION, "{" + canonical + "}", component, *rest]
        return ":".join(parts)

    def global_key(self, component: str, *rest: str) -> str:
        """A cross-service key: ``<prefix>:v1:global:<component>:<rest...>``."""
        return ":".join([self.prefix, _SCHEMA_VERSION, "global", component, *rest])

    def channel(self, service: str, component: str) -> str:
        """The pub/sub channel on which ``component`` events of ``service`` are published."""
        return self.key(service, component, "events")

    def service_from_key(self, key: str) -> str:
        """The service whose hash tag ``key`` carries (inverse of :meth:`key`)."""
        start = key.find("{")
        end = key.find("}", start + 1)
        if start < 0 or end < 0:
            raise ValueError(f"{key!r} is not a per-service msfw key")
        return key[start + 1 : end]

    # -- fleet-wide limits (msfw_redis._limits) ------------------------------------------

    def limits_channel(self, service: str) -> str:
        """The channel on which ``service``'s bulkhead and Retry-After events go out."""
        return self.channel(service, "limits")

    def bulkhead_permits(self, service: str, instance: str | None = None) -> str:
        """The zset of bulkhead permit leases of ``service`` (or of one instance of it)."""
        if instance is None:
            return self.key(service, "limits", "bulkhead")
        return self.key(service, "limits", "bulkhead", "i", instance)

    def rate_limit(self, tag: str, name: str) -> str:
        """The GCRA arrival time of rate limit ``name``, hash-tagged by ``tag``.

        ``tag`` is the service for per-service and per-endpoint limits, or the custom key
        itself (an API account, say), which must then be a valid service-like name.
        """
        return self.key(tag, "limits", "rate", name)

    def retry_after_gate(self, service: str) -> str:
        """The hash endpoint -> not-before (server ms) of ``service``'s Retry-After gate."""
        return self.key(service, "limits", "gate")

    def retry_budget(self, service: str) -> str:
        """The per-second request and retry buckets of ``service``'s retry budget."""
        return self.key(service, "limits", "budget")
