"""Rate limits of the API (DRF throttling). Counters live in the default cache (Redis or a database table), so
every web worker and thread shares them. A throttled request gets 429 with `Retry-After` and the JSON envelope.

Scopes (rates in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]):
- token: requests of one API token, on any endpoint;
- token_ip: token requests from one client address, whatever the token;
- predict / predict_ip: predict endpoints (views whose `project_action` is "predict"), per caller and per address;
- token_failure: wrong or revoked tokens from one address (checked in ProjectTokenAuthentication).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class SettingsRateThrottle(SimpleRateThrottle):
    """Reads its rate when created, not at import, so a settings change (and a test override) takes effect."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def key_for(self, ident: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}


def _token_of(request: Request) -> Any:
    return getattr(request.user, "api_token", None)


def _is_predict(view: Any) -> bool:
    return getattr(view, "project_action", None) == "predict"


class TokenRateThrottle(SettingsRateThrottle):
    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = _token_of(request)
        return self.key_for(token.pk) if token is not None else None


class TokenIpRateThrottle(SettingsRateThrottle):
    scope = "token_ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.key_for(self.get_ident(request)) if _token_of(request) is not None else None


class PredictRateThrottle(SettingsRateThrottle):
    scope = "predict"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not _is_predict(view):
            return None
        token = _token_of(request)
        return self.key_for(f"token{token.pk}" if token is not None else f"user{request.user.pk}")


class PredictIpRateThrottle(SettingsRateThrottle):
    scope = "predict_ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.key_for(self.get_ident(request)) if _is_predict(view) else None


class FailedTokenThrottle(SettingsRateThrottle):
    """Counts failed token authentications per client address; only failures are recorded, so a client with a
    valid token never uses up this budget."""

    scope = "token_failure"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.key_for(self.get_ident(request))

    def wait_if_blocked(self, request: Request) -> float | None:
        """Seconds until the next attempt is allowed, or None when the address may try now."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return self.wait() if len(self.history) >= self.num_requests else None

    def record_failure(self) -> None:
        if self.rate is None:
            return
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


def check_rates(throttles: list[Any], request: Request, view: Any) -> list[float | None]:
    """DRF's per-throttle check with every history read in one cache call and written in one (instead of a
    read and a write per scope): the waits of the throttles that refuse, empty when all allow."""
    waits: list[float | None] = []
    active = []
    for throttle in throttles:
        if not isinstance(throttle, SimpleRateThrottle):
            if not throttle.allow_request(request, view):
                waits.append(throttle.wait())
            continue
        key = throttle.get_cache_key(request, view) if throttle.rate is not None else None
        if key is not None:
            active.append((throttle, key))
    histories = cache.get_many([key for _, key in active]) if active else {}
    updates = {}
    for throttle, key in active:
        throttle.key, throttle.now = key, throttle.timer()
        throttle.history = [t for t in histories.get(key, []) if t > throttle.now - throttle.duration]
        if len(throttle.history) >= throttle.num_requests:
            waits.append(throttle.wait())
        else:
            throttle.history.insert(0, throttle.now)
            updates[key] = throttle.history
    if updates:
        cache.set_many(updates, max(throttle.duration for throttle, _ in active))
    return waits


class OneReadThrottling:
    """APIView mixin for hot endpoints: the throttles cost two cache round trips, not two per scope."""

    def check_throttles(self, request: Request) -> None:
        waits = check_rates(self.get_throttles(), request, self)  # type: ignore[attr-defined]
        if waits:
            self.throttled(request, max((w for w in waits if w is not None), default=None))  # type: ignore[attr-defined]
