"""The kernel's interfaces a container is made of: raw system calls (linux), control groups
(cgroups), the device allowlist (devices), seccomp filters and docker's profiles (seccomp,
profiles/), the read-only and masked paths (hardening)."""
