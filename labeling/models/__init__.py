"""Labeling data model. One module per concern; this package re-exports them for Django."""

from .browser import ItemPrediction, LabelIssueScore, SavedView
from .history import GoldConflict, ItemEvent
from .items import GoldLabel, ImportHeldLine, ImportJob, Item
from .projects import ApiToken, Invitation, Membership, Project, Role
from .review import ReviewTask
from .taxonomy import Label, TaxonomyVersion
from .workspace import (
    MIN_OVERLAP_ITEMS,
    AgreementReport,
    Annotation,
    Assignment,
    CheckItem,
    ItemSuggestion,
    Skip,
    WorkspaceSettings,
)

__all__ = [
    "MIN_OVERLAP_ITEMS",
    "AgreementReport",
    "Annotation",
    "ApiToken",
    "Assignment",
    "CheckItem",
    "GoldConflict",
    "GoldLabel",
    "ImportHeldLine",
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
