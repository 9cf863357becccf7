"""A container's lifecycle, as docker's commands name it: create, start, stop and remove; the
supervisor of detached containers, recovery after a crash, the log and a foreground session."""
