"""OpenTelemetry traces and metrics for one SDK (the ``otel`` extra, opentelemetry-api).

Explicit, as OTel instrumentors are::

    from msfw_redis.contrib.otel import instrument
    instrumentation = instrument(sdk)          # global providers unless given
    ...
    instrumentation.uninstrument()

Until ``instrument()`` is called the pipeline has no observer and pays nothing for
tracing (one truth test per step); without opentelemetry installed this module is
simply never imported.

Spans (HTTP client semantic conventions): one CLIENT span per call, named after the
method, with a child CLIENT span per attempt carrying ``http.request.method``,
``server.address``, ``server.port``, ``url.full``, ``http.response.status_code``,
``error.type`` and, on retries, ``http.request.resend_count`` (1 on the second
attempt). msfw attributes: ``msfw.service``, ``msfw.endpoint``,
``msfw.breaker.state``, ``msfw.cache`` (hit, stale, miss, coalesced, bypass),
``msfw.instance`` and ``msfw.attempt``. Each attempt's request carries the W3C
``traceparent`` of its span (through the global propagator).

Metrics: the ``http.client.request.duration`` histogram (seconds, the advised
buckets, semconv attributes), plus counters mirroring the Prometheus set:
``msfw.circuitbreaker.calls`` (kind), ``msfw.retry.calls`` (kind),
``msfw.cache.requests`` (result), and the gauges ``msfw.circuitbreaker.state``,
``msfw.circuitbreaker.slow_call_rate`` (this process's view), ``msfw.registry.instances``
(status) and ``msfw.health.status`` (1 healthy, 0 unhealthy), read without I/O.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from msfw_redis._breaker.machine import BreakerState
from msfw_redis._exceptions import CircuitOpenError
from msfw_redis._sdk.metrics import DURATION_BUCKETS

try:
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "msfw_redis.contrib.otel needs the 'otel' extra: pip install 'msfw-redis[otel]'"
    ) from exc

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry.metrics import CallbackOptions, MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from msfw_redis._pipeline.observe import AttemptRecord, CallRecord
    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["Instrumentation", "instrument"]

_SCOPE = "msfw_redis"
_STATES = tuple(state.label for state in BreakerState)
_INSTANCE_STATUSES = ("healthy", "recovering", "unhealthy", "suspect")


def _error_type(error: BaseException | None, status: int | None) -> str | None:
    if error is not None:
        return type(error).__qualname__
    if status is not None and status >= 400:
        return str(status)
    return None


class Instrumentation:
    """The observer ``instrument()`` added; ``uninstrument()`` removes it."""

    def __init__(
        self,
        sdk: ServiceSDK,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self._sdk = sdk
        self._key = id(self)
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._calls = meter.create_counter(
            "msfw.circuitbreaker.calls", unit="{call}", description="Calls by breaker outcome."
        )
        self._retries = meter.create_counter(
            "msfw.retry.calls", unit="{call}", description="Calls by retry outcome."
        )
        self._cache = meter.create_counter(
            "msfw.cache.requests", unit="{request}", description="Cache lookups by result."
        )
        meter.create_observable_gauge(
            "msfw.circuitbreaker.state",
            callbacks=[self._observe_states],
            description="1 for each breaker's current state, 0 for the others.",
        )
        meter.create_observable_gauge(
            "msfw.circuitbreaker.slow_call_rate",
            callbacks=[self._observe_slow],
            unit="1",
            description="Calls slower than slow_call_threshold, 0 to 1 (this process's view).",
        )
        meter.create_observable_gauge(
            "msfw.registry.instances",
            callbacks=[self._observe_instances],
            unit="{instance}",
            description="Instances this process last discovered, by status.",
        )
        meter.create_observable_gauge(
            "msfw.health.status",
            callbacks=[self._observe_health],
            description="1 healthy, 0 unhealthy: the last verdict this replica saw.",
        )

    def _observe_states(self, _options: CallbackOptions) -> Iterable[Observation]:
        for cs in self._sdk.circuit_states():
            name = cs.service if cs.endpoint is None else f"{cs.service}:{cs.endpoint}"
            for state in _STATES:
                yield Observation(
                    int(cs.state == state),
                    {"name": name, "service": cs.service, "state": state},
                )

    def _observe_slow(self, _options: CallbackOptions) -> Iterable[Observation]:
        services: dict[str, dict[str, int]] = self._sdk.metrics().get("services", {})
        for svc, c in services.items():
            judged = c["successes"] + c["failures"] - c["client_errors"]
            rate = c["slow_calls"] / judged if judged else 0.0
            yield Observation(rate, {"name": svc, "service": svc})

    def _observe_instances(self, _options: CallbackOptions) -> Iterable[Observation]:
        for svc, known in self._sdk.components.registry.known_instances().items():
            for status in _INSTANCE_STATUSES:
                count = sum(1 for inst in known if inst.status == status)
                yield Observation(count, {"service": svc, "status": status})

    def _observe_health(self, _options: CallbackOptions) -> Iterable[Observation]:
        for svc, verdict in self._sdk.components.health.known_states().items():
            yield Observation(int(verdict == "healthy"), {"service": svc})

    def uninstrument(self) -> None:
        """Stop tracing and measuring this SDK's calls."""
        self._sdk.remove_observer(self)

    # -- the CallObserver protocol ---------------------------------------------------------

    def call_started(self, call: CallRecord) -> None:
        """Open the call's span."""
        call.data[self._key] = self._tracer.start_span(
            call.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": call.method,
                "msfw.service": call.service,
                "msfw.endpoint": call.endpoint,
            },
        )

    def attempt_started(self, call: CallRecord, attempt: AttemptRecord) -> None:
        """Open the attempt's span and put its traceparent on the request."""
        parent: Span | None = call.data.get(self._key)
        context = trace.set_span_in_context(parent) if parent is not None else None
        url = attempt.request.url
        attributes: dict[str, Any] = {
            "http.request.method": attempt.request.method,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            # Credentials never go into a span; copy_with is costly, so only when present.
            "url.full": str(url.copy_with(username=None, password=None) if url.userinfo else url),
            "msfw.attempt": attempt.number,
        }
        if attempt.number > 1:
            attributes["http.request.resend_count"] = attempt.number - 1
        if call.breaker_state is not None:
            attributes["msfw.breaker.state"] = call.breaker_state
        if call.instance is not None:
            attributes["msfw.instance"] = call.instance
        span = self._tracer.start_span(
            attempt.request.method, context=context, kind=SpanKind.CLIENT, attributes=attributes
        )
        attempt.data[self._key] = span
        propagate.inject(attempt.request.headers, context=trace.set_span_in_context(span))
        if attempt.number == 1:
            server = {k: attributes[k] for k in ("server.address", "server.port")}
            call.data[-self._key] = server
            if parent is not None:
                parent.set_attributes({**server, "url.full": attributes["url.full"]})

    def attempt_ended(self, call: CallRecord, attempt: AttemptRecord) -> None:
        """Close the attempt's span with its status code or error type."""
        span: Span | None = attempt.data.pop(self._key, None)
        if span is None:
            return
        status = None if attempt.response is None else attempt.response.status_code
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        error = _error_type(attempt.error, status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def call_ended(self, call: CallRecord) -> None:
        """Close the call's span; record the duration and the counters."""
        elapsed = time.monotonic() - call.started
        error = _error_type(call.error, call.status_code)
        attributes: dict[str, Any] = {"http.request.method": call.method}
        span: Span | None = call.data.pop(self._key, None)
        attributes.update(call.data.pop(-self._key, {}))  # server.* of the first attempt
        if call.status_code is not None:
            attributes["http.response.status_code"] = call.status_code
        if error is not None:
            attributes["error.type"] = error
        self._duration.record(elapsed, {**attributes, "msfw.service": call.service})
        labels = {"name": call.service, "service": call.service}
        if isinstance(call.error, CircuitOpenError):
            kind = "not_permitted"
        elif error is None:
            kind = "successful"
        elif call.status_code is not None and call.status_code < 500:
            kind = "ignored"
        else:
            kind = "failed"
        self._calls.add(1, {**labels, "kind": kind})
        if kind != "not_permitted":
            ok = "successful" if error is None else "failed"
            retried = "with" if call.attempts > 1 else "without"
            self._retries.add(1, {**labels, "kind": f"{ok}_{retried}_retry"})
        if call.cache is not None:
            self._cache.add(1, {**labels, "result": call.cache})
        if span is None:
            return
        extra: dict[str, Any] = {"msfw.attempts": call.attempts}
        if call.status_code is not None:
            extra["http.response.status_code"] = call.status_code
        if call.breaker_state is not None:
            extra["msfw.breaker.state"] = call.breaker_state
        if call.cache is not None:
            extra["msfw.cache"] = call.cache
        if call.instance is not None:
            extra["msfw.instance"] = call.instance
        if error is not None:
            extra["error.type"] = error
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(extra)
        span.end()


def instrument(
    sdk: ServiceSDK,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Instrumentation:
    """Trace and measure every call ``sdk`` makes; returns the handle to undo it.

    ``tracer_provider`` and ``meter_provider`` default to the global ones.
    """
    instrumentation = Instrumentation(sdk, tracer_provider, meter_provider)
    sdk.add_observer(instrumentation)
    return instrumentation
