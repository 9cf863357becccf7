"""What the tests share, one module per idea:

- paths: the repository, corpus, samples and the files beside the tests
- images: docker-save archives and OCI layouts built in the test
- tar_entries: tar members of any kind (Entry, file_entry, dir_entry, …) and build_layer
- snapshots: the state of a tree, to prove it unchanged (or see what changed)
- trees: unpacked directories and exported tars in one comparable form
- sandbox: a function run with the host's files read-only
- cli: running dockscope (a child process, or in-process through typer for speed)
- runtime: containers run for real and the host around them
- containers: what a container saw, for the export and commit tests
- storage: engine-storage evidence that must never change
- cgroupfs: fake cgroup v1/v2 hierarchies
- browser: a headless chromium driven over the DevTools protocol
"""
