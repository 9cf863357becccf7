/* The system calls docker's default seccomp profile denies, tried one by one inside a
 * container by tests/runtime/test_runtime_seccomp.py (built there with gcc -static).
 * Each argument names a probe, run in a child of its own (a new user namespace must not be
 * the next probe's parent); each prints "NAME ok" or "NAME errno=E" (E as in errno.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name_of(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EDQUOT: return "EDQUOT";
    default: return strerror(e);
    }
}

static long probe(const char *what) {
    if (!strcmp(what, "add_key"))  /* a key in the session keyring, shared with the host */
        return syscall(SYS_add_key, "user", "dockscope-probe", "secret", 6, -3 /* session */);
    if (!strcmp(what, "keyctl"))  /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(what, "unshare-user"))
        return unshare(CLONE_NEWUSER);
    if (!strcmp(what, "mount-in-userns")) {  /* root of a new user namespace mounts a tmpfs */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return -1;
        return mount("none", "/tmp", "tmpfs", 0, NULL);
    }
    if (!strcmp(what, "clone3"))
        return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(what, "chroot"))
        return chroot("/");
    if (!strcmp(what, "mkdir"))
        return mkdir("/probe-dir", 0755);
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            errno = 0;
            if (probe(argv[i]) < 0)
                printf("%s errno=%s\n", argv[i], name_of(errno));
            else
                printf("%s ok\n", argv[i]);
            return 0;
        }
        waitpid(pid, NULL, 0);
    }
    return 0;
}
