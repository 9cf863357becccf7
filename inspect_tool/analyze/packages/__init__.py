"""Installed packages read from an image's layers: one pure parser per ecosystem (bytes →
``Package`` records, bounded, malformed input a ``PackageDataError``) and ``scan`` (the layers
walked once, each package attributed to the layer that installed it)."""
