"""Developer laptop / `make run`: embedded defaults. DEBUG stays off unless DJANGO_DEBUG=1 asks for it, so a
wrong URL shows the friendly 404 page, not Django's debug page with every URL pattern."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", False)

# Serve static files straight from the source folders too (no collectstatic needed after an edit).
WHITENOISE_USE_FINDERS = True
