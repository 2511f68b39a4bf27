"""Request middleware: a clear 503 page on broker outages, and the UI language choice."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.shortcuts import render
from django.utils import translation

from sceneclf_site.api_errors import BROKER_DOWN_MESSAGE, BrokerUnavailable, is_broker_error


class BrokerUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, BrokerUnavailable):
            message = exception.message  # e.g. which run now waits for the queue
        elif is_broker_error(exception):
            message = BROKER_DOWN_MESSAGE
        else:
            return None
        return render(request, "503_broker.html", {"message": message}, status=503)


class CookieOrDefaultLocaleMiddleware(LocaleMiddleware):
    """The UI speaks the deployment's language (Chinese by default) until a user picks another in the menu;
    the browser's Accept-Language is ignored so a team sees one consistent UI and taxonomy language."""

    def process_request(self, request: HttpRequest) -> None:
        language = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        if language not in dict(settings.LANGUAGES):
            language = settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
