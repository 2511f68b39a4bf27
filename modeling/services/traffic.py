"""The canary split: which alias answers a request.

A request with a session id goes to the challenger when a stable hash of (the project's salt, the session id)
falls below the challenger's share, so one user stays on one version while the share holds, and a larger
share keeps everyone who already had the challenger on it. A request without a session id is split on its
own (a fresh random draw)."""

from __future__ import annotations

import hashlib
import logging
import random

from labeling.models import Project
from modeling.models import Alias
from modeling.selectors.aliases import ServingAliases
from modeling.services.serving import LoadedModel, ModelUnavailableError, get_aliased_model, get_serving_model

logger = logging.getLogger(__name__)
_draws = random.SystemRandom()


def session_bucket(salt: str, session_id: str) -> float:
    """A number in [0, 1) fixed by (salt, session id): the first 8 bytes of their sha256."""
    digest = hashlib.sha256(f"{salt}\x00{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_alias(aliases: ServingAliases, session_id: str) -> str:
    """champion or challenger for one request."""
    if aliases.challenger_id is None or aliases.challenger_share <= 0.0:
        return Alias.CHAMPION.value
    if aliases.champion_id is None or aliases.challenger_share >= 1.0:
        return Alias.CHALLENGER.value
    draw = session_bucket(aliases.salt, session_id) if session_id else _draws.random()
    return Alias.CHALLENGER.value if draw < aliases.challenger_share else Alias.CHAMPION.value


def serving_model_for(project: Project, aliases: ServingAliases, session_id: str) -> tuple[str, LoadedModel]:
    """The alias that answers this request and its loaded model. A challenger that cannot be loaded leaves its
    share to the champion (logged) rather than failing the clients it was given."""
    alias = choose_alias(aliases, session_id)
    if alias == Alias.CHALLENGER and aliases.challenger_id is not None:
        try:
            return alias, get_aliased_model(project, aliases.challenger_id, alias)
        except ModelUnavailableError as exc:
            if aliases.champion_id is None:
                raise
            logger.warning("challenger of %s not served: %s", project.slug, exc.code)
    return Alias.CHAMPION.value, get_serving_model(project)
