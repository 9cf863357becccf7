"""The container's processes: the shim, PID 1 and the processes exec adds, by concept: launch
(what they are given), shim (namespaces), init (PID 1), mounts, identity (user, capabilities),
terminal and exec (nsexec)."""
