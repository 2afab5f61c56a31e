/* sandbox_probe: tries, from inside the image, each known way out of ingot's sandbox.
 *
 * Built static by tests/sandbox_escape.rs (cc -static) and run by a provision script or a
 * maintainer script. Usage: sandbox_probe HOST_DIR PORT CHECK...
 *   HOST_DIR  a directory on the build host holding a file "secret" (outside the staging tree)
 *   PORT      a TCP port the test listens on at 127.0.0.1 on the host (0: skip)
 *   CHECK     proc1 | procpids | fds | chroot | mounts | ptrace | tty | tcp | hostfile |
 *             hostsys | devnodes | procmasks | all
 *             ipc:KEY (the host's SysV segment/queue with KEY and POSIX queue /ingot-probe-KEY must be
 *             out of sight; leaves KEY+1 ones behind) | uts:HOSTNAME (the host's name) |
 *             seccomp (each refused system call: "refused <name>: <errno text>") |
 *             keys:DESC (a "user" key DESC in the caller's session keyring must be out of sight;
 *             adds "DESC-left") |
 *             abstract:NAME (the host's abstract unix socket @NAME must be out of reach) |
 *             get:ADDR:PORT:PATH (an HTTP GET that must work: prints "got ADDR:PORT <body>") |
 *             noget:ADDR:PORT (a TCP connection whose far end the host side checks: prints
 *             "tried ADDR:PORT <connected|errno>", never an escape by itself)
 * Prints one line per attempt: "refused <what>: <why>" or "ESCAPED <what>", and exits 1 if
 * anything escaped (so the build fails too). "connected tcp" is printed instead of
 * "ESCAPED tcp" when the caller passes PORT with a leading '+' (the network was asked for).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/time.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <mqueue.h>
#include <linux/sched.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <termios.h>
#include <unistd.h>

static const char *host_dir;
static int escaped;
static char climb[4096];

static void refused(const char *what, int err) { printf("refused %s: %s\n", what, strerror(err)); }
static void escape(const char *what) { printf("ESCAPED %s\n", what); escaped = 1; }

/* From a directory handle, climb to the real root and reach HOST_DIR/secret; also try to
 * create HOST_DIR/pwned. Either working means the handle leads to the host. */
static void through(int dirfd, const char *what) {
    char path[8192];
    snprintf(path, sizeof path, "%s%s/secret", climb, host_dir);
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd >= 0) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0 && strncmp(buf, "host-secret", 11) == 0) {
            char w[512];
            snprintf(w, sizeof w, "read %s", what);
            escape(w);
        }
    }
    snprintf(path, sizeof path, "%s%s/pwned", climb, host_dir);
    fd = openat(dirfd, path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) {
        char w[512];
        snprintf(w, sizeof w, "write %s", what);
        escape(w);
        close(fd);
    }
}

static void try_path(const char *path, const char *what) {
    int fd = open(path, O_PATH | O_DIRECTORY);
    if (fd < 0) {
        int e = errno;
        char w[512];
        snprintf(w, sizeof w, "%s (%s)", what, path);
        refused(w, e);
        return;
    }
    through(fd, what);
    close(fd);
}

static void check_proc1(void) {
    try_path("/proc/1/root", "/proc/1/root");
    try_path("/proc/1/cwd", "/proc/1/cwd");
}

static void check_procpids(void) {
    DIR *d = opendir("/proc");
    if (!d) { refused("/proc listing", errno); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char p[512], what[512];
        snprintf(p, sizeof p, "/proc/%s/root", e->d_name);
        snprintf(what, sizeof what, "/proc/%s/root", e->d_name);
        try_path(p, what);
        snprintf(p, sizeof p, "/proc/%s/cwd", e->d_name);
        snprintf(what, sizeof what, "/proc/%s/cwd", e->d_name);
        try_path(p, what);
        snprintf(p, sizeof p, "/proc/%s/fd", e->d_name);
        DIR *fds = opendir(p);
        if (!fds) { refused(p, errno); continue; }
        struct dirent *f;
        while ((f = readdir(fds))) {
            if (f->d_name[0] == '.') continue;
            char fp[1024];
            snprintf(fp, sizeof fp, "%s/%s", p, f->d_name);
            int fd = open(fp, O_PATH);
            if (fd < 0) { refused(fp, errno); continue; }
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) through(fd, fp);
            close(fd);
        }
        closedir(fds);
    }
    closedir(d);
}

/* Any descriptor this process did not open itself that leads to the host: a directory from
 * which the host's secret is reachable, or the secret file itself. */
static void check_fds(void) {
    int bad = 0;
    for (int fd = 3; fd < 4096; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0) continue;
        char w[64];
        snprintf(w, sizeof w, "inherited fd %d", fd);
        int before = escaped;
        if (S_ISDIR(st.st_mode)) through(fd, w);
        else if (S_ISREG(st.st_mode)) {
            char buf[64] = {0};
            if (pread(fd, buf, sizeof buf - 1, 0) > 0 && strncmp(buf, "host-secret", 11) == 0) escape(w);
        }
        if (escaped != before) bad = 1;
    }
    if (!bad) refused("inherited fds", EBADF);
}

static void check_chroot(void) {
    mkdir("/ingot-probe-x", 0700);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (chroot("/ingot-probe-x") != 0) { refused("second chroot", errno); fflush(stdout); _exit(0); }
        /* cwd is still the image root, outside the new chroot: climb. */
        for (int i = 0; i < 64; i++) if (chdir("..") != 0) break;
        if (chroot(".") != 0) { refused("second chroot (re-root)", errno); fflush(stdout); _exit(0); }
        char path[4096];
        snprintf(path, sizeof path, "%s/secret", host_dir);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) { escape("second chroot: read the host's file"); fflush(stdout); _exit(1); }
        refused("second chroot: climbing out", errno);
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1) escaped = 1;
    rmdir("/ingot-probe-x");
}

static void check_mounts(void) {
    const char *targets[] = {"/proc", "/dev", "/dev/pts", "/dev/null", "/run", "/"};
    for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
        char w[128];
        snprintf(w, sizeof w, "umount %s", targets[i]);
        if (umount2(targets[i], MNT_DETACH) == 0) escape(w); else refused(w, errno);
    }
    if (mount("tmpfs", "/dev", "tmpfs", 0, NULL) == 0) escape("mount tmpfs on /dev");
    else refused("mount tmpfs on /dev", errno);
    if (mount(NULL, "/dev/null", NULL, MS_REMOUNT | MS_BIND, NULL) == 0) escape("remount /dev/null");
    else refused("remount /dev/null", errno);
    /* Through a nested user namespace, which anyone may create: the sandbox's mounts come
     * along locked. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) { refused("nested user namespace", errno); _exit(0); }
        int bad = 0;
        for (unsigned i = 0; i < sizeof targets / sizeof *targets; i++) {
            char w[128];
            snprintf(w, sizeof w, "umount %s in a nested user namespace", targets[i]);
            if (umount2(targets[i], MNT_DETACH) == 0) { escape(w); bad = 1; } else refused(w, errno);
        }
        fflush(stdout);
        _exit(bad);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1) escaped = 1;
    /* The dev/ symlink trick: replace /dev by a link to the host directory. */
    if (rename("/dev", "/ingot-probe-dev") == 0) escape("move /dev away");
    else refused("move /dev away", errno);
    if (rmdir("/dev") == 0) escape("remove /dev"); else refused("remove /dev", errno);
}

static void check_ptrace(void) {
    if (ptrace(PTRACE_ATTACH, 1, NULL, NULL) == 0) {
        escape("ptrace attach to pid 1");
        /* Let it go again, or the build would hang stopped instead of failing. */
        int st;
        waitpid(1, &st, __WALL);
        ptrace(PTRACE_DETACH, 1, NULL, NULL);
        kill(1, SIGCONT);
    }
    else refused("ptrace attach to pid 1", errno);
    if (ptrace(PTRACE_SEIZE, 1, NULL, NULL) == 0) { escape("ptrace seize of pid 1"); ptrace(PTRACE_DETACH, 1, NULL, NULL); }
    else refused("ptrace seize of pid 1", errno);
}

static void check_tty(void) {
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (fd < 0) { refused("open /dev/tty", errno); }
    else {
        escape("open /dev/tty");
        char c = '#';
        if (ioctl(fd, TIOCSTI, &c) == 0) escape("TIOCSTI on /dev/tty"); else refused("TIOCSTI on /dev/tty", errno);
        close(fd);
    }
    for (int i = 0; i < 3; i++) {
        char c = '#';
        char w[64];
        snprintf(w, sizeof w, "TIOCSTI on fd %d", i);
        if (ioctl(i, TIOCSTI, &c) == 0) escape(w); else refused(w, errno);
    }
}

static void check_tcp(const char *port_arg) {
    int wanted = port_arg[0] == '+';
    int port = atoi(wanted ? port_arg + 1 : port_arg);
    if (port <= 0) return;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        if (wanted) printf("connected tcp 127.0.0.1:%d\n", port);
        else escape("tcp connection to the host's loopback");
    } else {
        int e = errno;
        if (wanted) { printf("FAILED tcp with the network asked for: %s\n", strerror(e)); escaped = 1; }
        else refused("tcp connection to the host's loopback", e);
    }
    close(s);
}

static void check_abstract(const char *name) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n > sizeof a.sun_path - 1) n = sizeof a.sun_path - 1;
    memcpy(a.sun_path + 1, name, n);
    char what[160];
    snprintf(what, sizeof what, "connection to the host's abstract socket @%s", name);
    if (connect(s, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0)
        escape(what);
    else
        refused(what, errno);
    close(s);
}

/* A TCP connection to ADDR:PORT; returns the socket or -1 (errno set). */
static int tcp_to(const char *addr, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) { errno = EINVAL; close(s); return -1; }
    struct timeval tv = {5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { int e = errno; close(s); errno = e; return -1; }
    return s;
}

/* "ADDR:PORT:PATH": GET PATH, print the body on one line. */
static void check_get(const char *spec) {
    char addr[64] = {0}, path[256] = {0};
    int port = 0;
    if (sscanf(spec, "%63[^:]:%d:%255s", addr, &port, path) != 3) { printf("FAILED get: bad spec %s\n", spec); escaped = 1; return; }
    int s = tcp_to(addr, port);
    if (s < 0) { printf("FAILED get %s:%d: %s\n", addr, port, strerror(errno)); escaped = 1; return; }
    char req[512];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
    if (write(s, req, len) != len) { printf("FAILED get: write: %s\n", strerror(errno)); escaped = 1; close(s); return; }
    static char buf[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(s, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(s);
    char *body = strstr(buf, "\r\n\r\n");
    for (char *p = body ? body + 4 : buf; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    printf("got %s:%d %s\n", addr, port, body ? body + 4 : "(no body)");
}

static void check_noget(const char *spec) {
    char addr[64] = {0};
    int port = 0;
    if (sscanf(spec, "%63[^:]:%d", addr, &port) != 2) { printf("FAILED noget: bad spec %s\n", spec); escaped = 1; return; }
    int s = tcp_to(addr, port);
    if (s < 0) { printf("tried %s:%d %s\n", addr, port, strerror(errno)); return; }
    const char *req = "GET / HTTP/1.0\r\n\r\n";
    ssize_t ignored = write(s, req, strlen(req));
    (void)ignored;
    close(s);
    printf("tried %s:%d connected\n", addr, port);
}

static void check_hostfile(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/secret", host_dir);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) escape("read the host's file by its path"); else refused("read the host's file by its path", errno);
}

/* The host's kernel settings: opening for writing is enough (a write to core_pattern would
 * take the host). */
static void try_write_open(const char *path, const char *what) {
    int fd = open(path, O_WRONLY);
    if (fd >= 0) { escape(what); close(fd); } else refused(what, errno);
}

static void check_hostsys(void) {
    try_write_open("/proc/sys/kernel/core_pattern", "write /proc/sys/kernel/core_pattern");
    try_write_open("/proc/sys/kernel/hostname", "write /proc/sys/kernel/hostname");
    try_write_open("/proc/sysrq-trigger", "write /proc/sysrq-trigger");
}

/* The device nodes bound in from the host: none may be re-moded, re-owned or touched. Each
 * change is to the value the node already has, so that an escape changes nothing on the host
 * but its ctime (and, for the touch, its times). */
static void check_devnodes(void) {
    const char *nodes[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"};
    for (unsigned i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        const char *n = nodes[i];
        struct stat st;
        if (lstat(n, &st) != 0) continue;
        char w[128];
        snprintf(w, sizeof w, "chmod %s", n);
        if (chmod(n, st.st_mode & 07777) == 0) escape(w); else refused(w, errno);
        snprintf(w, sizeof w, "chown %s", n);
        if (chown(n, st.st_uid, st.st_gid) == 0) escape(w); else refused(w, errno);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        snprintf(w, sizeof w, "set the times of %s", n);
        if (utimensat(AT_FDCWD, n, ts, 0) == 0) escape(w); else refused(w, errno);
        snprintf(w, sizeof w, "touch %s", n);
        if (utimensat(AT_FDCWD, n, NULL, 0) == 0) escape(w); else refused(w, errno);
    }
}

/* /proc as Docker leaves it: the kernel's settings on read-only mounts, its memory, keys and
 * timers masked. */
static void check_procmasks(void) {
    const char *ro[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"};
    for (unsigned i = 0; i < sizeof ro / sizeof *ro; i++) {
        struct stat st;
        if (lstat(ro[i], &st) != 0) continue;
        struct statvfs vfs;
        char w[128];
        snprintf(w, sizeof w, "writable mount of %s", ro[i]);
        if (statvfs(ro[i], &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) refused(w, EROFS); else escape(w);
    }
    /* The sandbox's own network namespace's settings: writable for its root without the mask. */
    try_write_open("/proc/sys/net/ipv4/ping_group_range", "write /proc/sys/net/ipv4/ping_group_range");
    const char *masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"};
    for (unsigned i = 0; i < sizeof masked / sizeof *masked; i++) {
        char w[128];
        snprintf(w, sizeof w, "read %s", masked[i]);
        int fd = open(masked[i], O_RDONLY);
        if (fd < 0) { refused(w, errno); continue; }
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        if (n > 0) escape(w); else printf("refused %s: masked\n", w);
    }
}

static void check_ipc(long key) {
    if (shmget((key_t)key, 0, 0) >= 0) escape("the host's SysV shared memory");
    else refused("the host's SysV shared memory", errno);
    if (msgget((key_t)key, 0) >= 0) escape("the host's SysV message queue");
    else refused("the host's SysV message queue", errno);
    char name[64];
    snprintf(name, sizeof name, "/ingot-probe-%ld", key);
    mqd_t q = mq_open(name, O_RDONLY);
    if (q != (mqd_t)-1) { escape("the host's POSIX message queue"); mq_close(q); }
    else refused("the host's POSIX message queue", errno);
    /* Leftovers: the test looks for them on the host after the build. */
    if (shmget((key_t)(key + 1), 4096, IPC_CREAT | 0666) >= 0) printf("left a SysV segment\n");
    if (msgget((key_t)(key + 1), IPC_CREAT | 0666) >= 0) printf("left a SysV message queue\n");
    snprintf(name, sizeof name, "/ingot-probe-%ld", key + 1);
    q = mq_open(name, O_CREAT | O_RDWR, 0666, NULL);
    if (q != (mqd_t)-1) { printf("left a POSIX message queue\n"); mq_close(q); }
}

static void check_uts(const char *host_name) {
    char name[256] = {0};
    gethostname(name, sizeof name - 1);
    printf("hostname %s\n", name);
    if (strcmp(name, host_name) == 0) escape("the host's hostname");
    else refused("the host's hostname", 0);
    /* To the value it has: harmless even if it worked. */
    if (sethostname(name, strlen(name)) == 0) escape("sethostname");
    else refused("sethostname", errno);
}

#define KEY_SPEC_SESSION_KEYRING_ (-3)
#define KEY_SPEC_USER_KEYRING_ (-4)
#define KEYCTL_SEARCH_ 10
static void check_keys(const char *desc) {
    long k = syscall(SYS_keyctl, KEYCTL_SEARCH_, KEY_SPEC_SESSION_KEYRING_, "user", desc, 0);
    if (k >= 0) escape("the caller's session keyring");
    else refused("the caller's session keyring", errno);
    k = syscall(SYS_request_key, "user", desc, NULL, 0);
    if (k >= 0) escape("request_key of the caller's key");
    else refused("request_key of the caller's key", errno);
    char left[256];
    snprintf(left, sizeof left, "%s-left", desc);
    if (syscall(SYS_add_key, "user", left, "x", 1, KEY_SPEC_SESSION_KEYRING_) >= 0) printf("added a key to the session keyring\n");
    if (syscall(SYS_add_key, "user", left, "x", 1, KEY_SPEC_USER_KEYRING_) >= 0) printf("added a key to the user keyring\n");
}

/* One system call the filter refuses: "refused NAME: ERRNO" when it fails. Arguments are
 * chosen so that without a filter the kernel answers with another error (or succeeds). */
static void sys_refused(const char *name, long ret) {
    if (ret >= 0) { char w[128]; snprintf(w, sizeof w, "%s succeeded", name); escape(w); }
    else refused(name, errno);
}

/* A child through clone/clone3 with CLONE_NEWUSER: exits at once if created. */
static void clone_refused(const char *name, long ret) {
    if (ret == 0) _exit(0);
    if (ret > 0) { waitpid((pid_t)ret, NULL, 0); }
    sys_refused(name, ret);
}

static void check_seccomp(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int mode = -1;
    while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "Seccomp:", 8)) mode = atoi(line + 8);
    if (f) fclose(f);
    if (mode == 2) refused("no syscall filter", 0); else escape("no syscall filter");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { if (unshare(CLONE_NEWUSER) == 0) _exit(1); _exit(errno == EPERM ? 0 : 2); }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) refused("unshare(CLONE_NEWUSER)", EPERM);
    else escape("unshare(CLONE_NEWUSER)");
    fflush(stdout);
    clone_refused("clone(CLONE_NEWUSER)", syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L));
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_NEWUSER;
    ca.exit_signal = SIGCHLD;
    fflush(stdout);
    clone_refused("clone3", syscall(SYS_clone3, &ca, sizeof ca));
    sys_refused("keyctl", syscall(SYS_keyctl, 0L /* GET_KEYRING_ID */, (long)KEY_SPEC_SESSION_KEYRING_, 0L));
    sys_refused("add_key", syscall(SYS_add_key, "user", "ingot-probe", "x", 1L, (long)KEY_SPEC_SESSION_KEYRING_));
    sys_refused("request_key", syscall(SYS_request_key, "user", "ingot-probe-none", NULL, 0L));
    sys_refused("io_uring_setup", syscall(SYS_io_uring_setup, 1L, NULL));
    sys_refused("io_uring_enter", syscall(SYS_io_uring_enter, -1L, 0L, 0L, 0L, NULL, 0L));
    sys_refused("io_uring_register", syscall(SYS_io_uring_register, -1L, 0L, NULL, 0L));
    sys_refused("userfaultfd", syscall(SYS_userfaultfd, -1L));
    sys_refused("perf_event_open", syscall(SYS_perf_event_open, NULL, 0L, -1L, -1L, 0L));
    sys_refused("bpf", syscall(SYS_bpf, -1L, NULL, 0L));
    sys_refused("kexec_load", syscall(SYS_kexec_load, 0L, 0L, NULL, 0L));
    sys_refused("kexec_file_load", syscall(SYS_kexec_file_load, -1L, -1L, 0L, NULL, 0L));
    sys_refused("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0L, NULL));
    sys_refused("umount2", syscall(SYS_umount2, "/proc", (long)MNT_DETACH));
    sys_refused("open_tree", syscall(SYS_open_tree, -1L, "/", 1L /* OPEN_TREE_CLONE */));
    sys_refused("fsopen", syscall(SYS_fsopen, "tmpfs", 0L));
    sys_refused("ioctl(TIOCSTI)", ioctl(0, TIOCSTI, "#"));
    sys_refused("ioctl(TIOCLINUX)", ioctl(0, TIOCLINUX, "\0"));
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: sandbox_probe HOST_DIR PORT CHECK...\n"); return 2; }
    /* Probe fds before opening anything of our own. */
    int all = 0;
    for (int i = 3; i < argc; i++) if (strcmp(argv[i], "all") == 0) all = 1;
    host_dir = argv[1];
    climb[0] = 0;
    for (int i = 0; i < 40; i++) strcat(climb, "../");
    for (int i = 3; i < argc; i++) if (all || strcmp(argv[i], "fds") == 0) { check_fds(); break; }
    for (int i = 3; i < argc; i++) {
        const char *c = all ? NULL : argv[i];
        if (all || !strcmp(c, "proc1")) check_proc1();
        if (all || !strcmp(c, "procpids")) check_procpids();
        if (all || !strcmp(c, "chroot")) check_chroot();
        if (all || !strcmp(c, "mounts")) check_mounts();
        if (all || !strcmp(c, "ptrace")) check_ptrace();
        if (all || !strcmp(c, "tty")) check_tty();
        if (all || !strcmp(c, "tcp")) check_tcp(argv[2]);
        if (all || !strcmp(c, "hostfile")) check_hostfile();
        if (all || !strcmp(c, "hostsys")) check_hostsys();
        if (all || !strcmp(c, "devnodes")) check_devnodes();
        if (all || !strcmp(c, "procmasks")) check_procmasks();
        if (all || !strcmp(c, "seccomp")) check_seccomp();
        if (!all && !strncmp(c, "ipc:", 4)) check_ipc(atol(c + 4));
        if (!all && !strncmp(c, "uts:", 4)) check_uts(c + 4);
        if (!all && !strncmp(c, "keys:", 5)) check_keys(c + 5);
        if (!all && !strncmp(c, "abstract:", 9)) check_abstract(c + 9);
        if (!all && !strncmp(c, "get:", 4)) check_get(c + 4);
        if (!all && !strncmp(c, "noget:", 6)) check_noget(c + 6);
        if (all) break;
    }
    fflush(stdout);
    return escaped;
}
