"""Selection: which items to label next (active learning) and which labels to doubt (label quality)."""
