"""OCI image layouts written by dockscope (reading them is ``sources/oci_layout.py``'s job)."""
