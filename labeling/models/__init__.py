"""Labeling data model. One module per concern; this package re-exports them for Django."""

from .items import GoldLabel, ImportJob, Item
from .projects import ApiToken, Membership, Project, Role
from .review import ReviewTask
from .taxonomy import Label, TaxonomyVersion

__all__ = [
    "ApiToken",
    "GoldLabel",
    "ImportJob",
    "Item",
    "Label",
    "Membership",
    "Project",
    "ReviewTask",
    "Role",
    "TaxonomyVersion",
]
