"""The runtime's output, pure (nothing here reads state or prints): the JSON documents and
tables of its commands (documents), and ``ps`` as docker prints it (ps)."""
