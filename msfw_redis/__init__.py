"""msfw_redis: resilient service-to-service calls whose state every replica shares.

Circuit breakers, the response cache and the service registry live in Redis and change
only through atomic Lua scripts, so all replicas of a service see one breaker, one
cache and one registry.
"""

from msfw_redis._breaker.views import CircuitState, TransitionEvent
from msfw_redis._config import CircuitBreakerConfig, ServiceSDKConfig
from msfw_redis._exceptions import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    InvalidRequestError,
    MsfwError,
    RateLimitedError,
    ResponseTooLargeError,
    ScriptError,
    ServiceClientError,
    ServiceNotFoundError,
    ServiceTimeoutError,
    StoreConnectionError,
    StoreError,
    StoreTimeoutError,
)
from msfw_redis._interfaces.cached import cached_service_call
from msfw_redis._interfaces.decorators import circuit_breaker, health_check, retry_on_failure
from msfw_redis._interfaces.limits import bulkhead, rate_limited
from msfw_redis._interfaces.typed import ServiceInterface, service_call, service_interface
from msfw_redis._limits.config import BulkheadConfig, RateLimitConfig
from msfw_redis._limits.limits import LimitsState
from msfw_redis._models import HTTPMethod, ServiceResult
from msfw_redis._pipeline.client import ServiceClient
from msfw_redis._registry.instance import ServiceInstance
from msfw_redis._sdk.sdk import ServiceSDK, call_service, get_default_sdk, set_default_sdk
from msfw_redis._sdk.transport import ResilientTransport
from msfw_redis._settings import ServiceSettings

__version__ = "0.1.0"

__all__ = [
    "BulkheadConfig",
    "BulkheadFullError",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "HTTPMethod",
    "InvalidRequestError",
    "LimitsState",
    "MsfwError",
    "RateLimitConfig",
    "RateLimitedError",
    "ResilientTransport",
    "ResponseTooLargeError",
    "ScriptError",
    "ServiceClient",
    "ServiceClientError",
    "ServiceInstance",
    "ServiceInterface",
    "ServiceNotFoundError",
    "ServiceResult",
    "ServiceSDK",
    "ServiceSDKConfig",
    "ServiceSettings",
    "ServiceTimeoutError",
    "StoreConnectionError",
    "StoreError",
    "StoreTimeoutError",
    "TransitionEvent",
    "bulkhead",
    "cached_service_call",
    "call_service",
    "circuit_breaker",
    "get_default_sdk",
    "health_check",
    "rate_limited",
    "retry_on_failure",
    "service_call",
    "service_interface",
    "set_default_sdk",
]
