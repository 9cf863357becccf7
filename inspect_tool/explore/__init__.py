"""``dockscope explore``: an interactive layer explorer (Textual).

``model`` (the layered file tree, its views and filters), ``content`` (a file's bytes as text
or a hex dump), ``extract`` (a file or directory written to disk by the safe unpack code) and
``trace`` (a runtime ``--trace-json`` file read as steps) are pure: no Textual, testable on
their own. ``app`` is the Textual application; only ``inspect_tool.cli.explore`` imports it,
inside the command, so no other command loads Textual.
"""
