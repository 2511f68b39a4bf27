"""One error shape for the whole API: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext, gettext_lazy
from rest_framework import exceptions
from rest_framework.response import Response


class ServiceError(Exception):
    """Raised by services for a request that cannot be carried out; maps to HTTP 400 by default."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class BrokerUnavailable(ServiceError):
    status_code = 503
    code = "broker_unavailable"


BROKER_DOWN_MESSAGE = gettext_lazy(
    "The task queue (broker) is not reachable, so background work cannot start right now. "
    "Nothing was lost: try again when the broker is back (see GET /api/v1/health)."
)


def is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError

    return isinstance(exc, OperationalError) or type(exc).__module__.startswith("redis.exceptions")


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "request_too_large"


def _size_limit_error(exc: Exception) -> ServiceError | None:
    """Django's own body/upload limits (SuspiciousOperation, an HTML 400 by default) as JSON errors."""
    if isinstance(exc, RequestDataTooBig):
        if getattr(exc, "limit", None) is not None:  # sceneclf_site.parsers.UploadTooLarge
            return PayloadTooLarge(str(exc), code="file_too_large", details={"limit": exc.limit})
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return PayloadTooLarge(
            gettext("The request body is larger than the limit of %(limit)s bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).")
            % {"limit": limit},
            code="request_too_large",
            details={"limit": limit},
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return ServiceError(str(exc), code="too_many_fields")
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_broker_error(exc):
        exc = BrokerUnavailable(BROKER_DOWN_MESSAGE)
    exc = _size_limit_error(exc) or exc
    if isinstance(exc, ServiceError):
        body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    # Imported here: rest_framework.views loads the parser classes, and the JSON parser uses this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    message = detail.get("detail") if isinstance(detail, dict) and "detail" in detail else gettext("Invalid request.")
    response.data = {
        "error": {
            "code": getattr(exc, "default_code", "error"),
            "message": str(message),
            "details": None if isinstance(detail, dict) and set(detail) == {"detail"} else detail,
        }
    }
    return response


# --- Django's own error pages, for answers Django gives before any API view runs ----------------------------

API_PREFIX = "/api/"


def _envelope(status: int, code: str, message: str) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"error": {"code": code, "message": message, "details": None}}, status=status)


def page_not_found(request: Any, exception: Exception) -> Any:
    """handler404: a URL that matches no route (e.g. `/items/-3` where an id is expected) under /api/ answers
    the JSON envelope like every other API error; pages keep Django's page."""
    if request.path.startswith(API_PREFIX):
        return _envelope(404, "not_found", gettext("No such API endpoint or object."))
    from django.views.defaults import page_not_found as django_page_not_found

    return django_page_not_found(request, exception)


def bad_request(request: Any, exception: Exception) -> Any:
    """handler400: Django's SuspiciousOperation answers (body too large, too many fields) outside DRF views."""
    if request.path.startswith(API_PREFIX):
        error = _size_limit_error(exception)
        if error is not None:
            return _envelope(error.status_code, error.code, error.message)
        return _envelope(400, "bad_request", gettext("The request could not be read."))
    from django.views.defaults import bad_request as django_bad_request

    return django_bad_request(request, exception)


def server_error(request: Any) -> Any:
    """handler500: an API client gets JSON it can parse even for a bug; the log has the details."""
    if request.path.startswith(API_PREFIX):
        return _envelope(500, "server_error", gettext("Internal server error."))
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)
