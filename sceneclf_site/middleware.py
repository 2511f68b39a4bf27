"""Page-side counterpart of the API error handler: a broker outage gives a clear 503 page."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sceneclf_site.api_errors import BROKER_DOWN_MESSAGE, is_broker_error


class BrokerUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_broker_error(exception):
            return None
        return render(request, "503_broker.html", {"message": BROKER_DOWN_MESSAGE}, status=503)
