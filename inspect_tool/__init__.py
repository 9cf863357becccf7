"""dockscope's image half: read, verify and explain container image archives."""

__version__ = "0.1.0"
