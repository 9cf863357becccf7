"""dockscope's teaching half: run images with real namespaces, overlayfs and cgroups."""
