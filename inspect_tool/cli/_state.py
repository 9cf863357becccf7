"""Process-wide CLI settings made by the root callback and the root group."""

debug = False
# the command being run, as its usage errors name it (``ls``, ``container export``): set by
# the root group (cli/_usage.py) before it runs one
command = ""
