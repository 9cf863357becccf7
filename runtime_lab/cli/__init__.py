"""The runtime's commands in the ``dockscope`` CLI (``commands.py`` registers them). A plain
``dockscope run`` is parsed without typer (``run_args.py``) and carried out by
``run_container.py``, which the typer command calls too."""
