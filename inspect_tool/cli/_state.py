"""Process-wide CLI settings made by the root callback."""

debug = False
