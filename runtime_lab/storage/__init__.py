"""What the runtime keeps on disk: the state root (store), the layer store (layerstore,
overlay_extract), volumes, a container as a record (records), its writable layer as one more
engine storage driver (driver) and what export and commit make of it (commit)."""
