/* escape-probe: one attempt at a way out of a VE per call, run inside a VE by the escape
 * suite (tests/tests/escape.rs). Prints "ESCAPED <what>" and exits 0 when the attempt
 * worked, "refused <what>: <errno text>" and exits 1 when the kernel (or the VE's seccomp
 * filter) refused it, 2 on bad usage. Built static (the VE has no C library):
 *   gcc -static -O2 -o escape-probe escape-probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static int verdict(long rc, const char *what)
{
    if (rc >= 0) {
        printf("ESCAPED %s\n", what);
        return 0;
    }
    printf("refused %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: escape-probe ATTEMPT [ARG]\n");
        return 2;
    }
    const char *a = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(a, "keyctl")) /* read the session keyring: the host's keyrings are global */
        return verdict(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0), a);
    if (!strcmp(a, "add_key"))
        return verdict(syscall(SYS_add_key, "user", "vz-escape", "x", 1, -3), a);
    if (!strcmp(a, "init_module"))
        return verdict(syscall(SYS_init_module, "", 0, ""), a);
    if (!strcmp(a, "finit_module")) {
        int fd = open("/bin/sh", O_RDONLY);
        return verdict(syscall(SYS_finit_module, fd, "", 0), a);
    }
    if (!strcmp(a, "kexec_load"))
        return verdict(syscall(SYS_kexec_load, 0, 0, NULL, 0), a);
    if (!strcmp(a, "open_by_handle_at")) {
        /* shocker: a handle of inode 2 (the root) of the file system of "/" */
        struct { unsigned int bytes; int type; unsigned char f[8]; } h = { 8, 1, { 2, 0, 0, 0, 0, 0, 0, 0 } };
        int root = open("/", O_RDONLY);
        return verdict(syscall(SYS_open_by_handle_at, root, &h, O_RDONLY), a);
    }
    if (!strcmp(a, "tiocsti")) { /* type into the terminal on fd 0, or the controlling one */
        char c = '\n';
        int fd = 0;
        if (!isatty(0))
            fd = open("/dev/tty", O_RDWR);
        if (fd < 0)
            return verdict(-1, a);
        return verdict(ioctl(fd, TIOCSTI, &c), a);
    }
    if (!strcmp(a, "syslog")) /* read the host kernel's log */
        return verdict(syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0), a);
    if (!strcmp(a, "bpf"))
        return verdict(syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0), a);
    if (!strcmp(a, "perf_event_open"))
        return verdict(syscall(SYS_perf_event_open, NULL, -1, 0, -1, 0), a);
    if (!strcmp(a, "ptrace")) /* attach to the given pid */
        return verdict(ptrace(PTRACE_ATTACH, atoi(arg), 0, 0), a);
    if (!strcmp(a, "open_write")) /* open a file for writing */
        return verdict(open(arg, O_WRONLY), a);
    if (!strcmp(a, "open_read"))
        return verdict(open(arg, O_RDONLY), a);
    if (!strcmp(a, "udp6") && argc == 5) { /* udp6 SRC DST PORT: one datagram from SRC */
        struct sockaddr_in6 src = { .sin6_family = AF_INET6 }, dst = { .sin6_family = AF_INET6 };
        if (inet_pton(AF_INET6, argv[2], &src.sin6_addr) != 1 ||
            inet_pton(AF_INET6, argv[3], &dst.sin6_addr) != 1)
            return 2;
        dst.sin6_port = htons(atoi(argv[4]));
        int s = socket(AF_INET6, SOCK_DGRAM, 0);
        if (s < 0 || bind(s, (struct sockaddr *)&src, sizeof src) < 0)
            return verdict(-1, "bind the source");
        return verdict(sendto(s, argv[2], strlen(argv[2]), 0, (struct sockaddr *)&dst, sizeof dst), a);
    }
    fprintf(stderr, "escape-probe: unknown attempt %s\n", a);
    return 2;
}
