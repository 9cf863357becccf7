"""The parts of ``make_samples.py``, the generator of dockscope's sample images.

Standard library only (plus ``zstandard``), and never dockscope itself: the samples are the
independent oracle dockscope's readers are tested against. Imported by ``make_samples.py``
when it runs as a script (its folder is then on ``sys.path``); not an installed package.

- ``basics`` — media types, names, digests, Go-compatible JSON, timestamps.
- ``tarbuild`` — tar archives as Go's ``archive/tar`` writes them; gzip and zstd.
- ``filesystem`` — the layers of the samples' tiny distribution, and the build timeline.
- ``recipes`` — the Dockerfile steps and the history they leave; ``configs`` — image configs.
- ``oci`` — blobs, manifests, indexes and OCI layouts; ``expected`` — ``expected.json``.
- ``docker_archive`` — ``docker save``, legacy and Docker 25+.
- ``tampered`` — copies with one defect each; ``busybox`` — the runnable busybox image.
"""
