"""Health enrolments: what ``@health_check`` asks every SDK to monitor.

The decorators enrol services here, at import time if they like; each SDK reads the
enrolments when it starts and subscribes to later ones, so the decorators never need to
know which SDKs exist (and the SDK never imports the decorators).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ENROLLMENTS", "HealthEnrollment", "HealthEnrollments"]


@dataclass(frozen=True, slots=True)
class HealthEnrollment:
    """One service to monitor, with the ``@health_check`` settings (seconds)."""

    service: str
    interval: float
    timeout: float
    failure_threshold: int


class HealthEnrollments:
    """Every enrolment of this process, and the SDKs listening for new ones."""

    def __init__(self) -> None:
        self._items: dict[str, HealthEnrollment] = {}
        # Weak: a listener is a started SDK's bound method; a dropped SDK stops listening.
        self._listeners: list[weakref.WeakMethod[Callable[[HealthEnrollment], None]]] = []

    def enroll(self, enrollment: HealthEnrollment) -> None:
        """Record ``enrollment`` (replacing one for the same service) and tell listeners."""
        self._items[enrollment.service] = enrollment
        for ref in list(self._listeners):
            listener = ref()
            if listener is None:
                self._listeners.remove(ref)
            else:
                listener(enrollment)

    def all(self) -> list[HealthEnrollment]:
        """Every enrolment so far, oldest first."""
        return list(self._items.values())

    def subscribe(self, listener: Callable[[HealthEnrollment], None]) -> None:
        """Call the bound method ``listener`` for each later enrolment."""
        self._listeners.append(weakref.WeakMethod(listener))

    def unsubscribe(self, listener: Callable[[HealthEnrollment], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners = [ref for ref in self._listeners if ref() not in (None, listener)]


#: The process's enrolments (``@health_check`` writes, SDKs read).
ENROLLMENTS = HealthEnrollments()
