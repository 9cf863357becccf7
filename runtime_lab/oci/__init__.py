"""An OCI runtime with runc's command line (``dockscope-runtime``): what podman, buildah and
containerd ask of a runtime (create, start, state, kill, delete, exec), done with the traced
steps of ``dockscope run``. ``config`` reads a bundle's config.json into typed values and
refuses what is not implemented; ``container`` makes and drives containers; ``init`` is what
runs as the container's PID 1."""
