"""Developer laptop / `make run`: debug on, embedded defaults."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)

# Serve static files straight from the source folders while developing (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
