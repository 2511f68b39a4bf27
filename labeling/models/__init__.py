"""Labeling data model. One module per concern; this package re-exports them for Django."""

from .browser import ItemPrediction, LabelIssueScore, SavedView
from .history import GoldConflict, ItemEvent
from .items import GoldLabel, ImportJob, Item
from .projects import ApiToken, Invitation, Membership, Project, Role
from .review import ReviewTask
from .taxonomy import Label, TaxonomyVersion
from .workspace import AgreementReport, Annotation, Assignment, ItemSuggestion, Skip, WorkspaceSettings

__all__ = [
    "AgreementReport",
    "Annotation",
    "ApiToken",
    "Assignment",
    "GoldConflict",
    "GoldLabel",
    "ImportJob",
    "Invitation",
    "Item",
    "ItemEvent",
    "ItemPrediction",
    "ItemSuggestion",
    "Label",
    "LabelIssueScore",
    "Membership",
    "Project",
    "ReviewTask",
    "Role",
    "SavedView",
    "Skip",
    "TaxonomyVersion",
    "WorkspaceSettings",
]
