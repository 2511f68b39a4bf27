"""Settings split as in cookiecutter-django: base, then local / production / test on top.

Pick one with DJANGO_SETTINGS_MODULE (manage.py defaults to ``local``).
"""
