// The launcher side of `synthvm run` (Sources/synthvm/VMProcessLauncher.swift): each VM life runs
// in a process of its own, a fresh exec of `synthvm-vm` (its own address-space layout), whose
// every thread ends up filtered; the launcher only waits, restarts it
// after a guest reset, passes SIGINT/SIGTERM on and ends the way the VM process ended. Signal
// handling is here because a handler must be async-signal-safe.
#define _GNU_SOURCE  // pipe2, environ
#include "csynthvm.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t launcher_child = 0;
static volatile sig_atomic_t launcher_signal = 0;

static void launcher_forward(int sig) {
    int saved = errno;
    launcher_signal = sig;
    pid_t child = launcher_child;
    if (child > 0) kill(child, sig);
    errno = saved;
}

int svm_launcher_forward_signals(void) {
    struct sigaction sa = {0};
    sa.sa_handler = launcher_forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    const int signals[] = { SIGINT, SIGTERM };
    for (int i = 0; i < 2; i++) {
        struct sigaction previous;
        if (sigaction(signals[i], NULL, &previous) < 0) return -errno;
        // Ignored when we started (a background job of a non-interactive shell, nohup): it stays
        // ignored, for the VM process too, as it was for the single process before.
        if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) continue;
        if (sigaction(signals[i], &sa, NULL) < 0) return -errno;
        sigaddset(&set, signals[i]);
    }
    // Whoever started us may have left them blocked (a test runner's thread does); the launcher
    // must see them to pass them on.
    return sigprocmask(SIG_UNBLOCK, &set, NULL) < 0 ? -errno : 0;
}

int svm_launcher_spawn(const char *path, char *const argv[], int config_fd, int report_fd, int api_fd,
                       const int *extra_fds, int extra_count) {
    if (extra_count < 0 || extra_count > 64) return -EINVAL;
    // Where the child's descriptors come from, moved above every target (3, 4, 5, 6 + extra)
    // first (close-on-exec copies) so that dup2 onto them can never clobber a source still needed.
    int floor = 16 + extra_count;
    int config_high = fcntl(config_fd, F_DUPFD_CLOEXEC, floor);
    if (config_high < 0) return -errno;
    int report_high = -1, api_high = -1, result[2] = {-1, -1}, result_high = -1, extra_high[64];
    int opened = 0, e = 0;
    if (report_fd >= 0 && (report_high = fcntl(report_fd, F_DUPFD_CLOEXEC, floor)) < 0) e = errno;
    if (!e && api_fd >= 0 && (api_high = fcntl(api_fd, F_DUPFD_CLOEXEC, floor)) < 0) e = errno;
    for (; !e && opened < extra_count; opened++) {
        if ((extra_high[opened] = fcntl(extra_fds[opened], F_DUPFD_CLOEXEC, floor)) < 0) e = errno;
        if (e) break;
    }
    // The child reports a failed exec here (its errno); a successful exec closes it empty. Its
    // write end goes above every target too: a disk's fd moved onto it would get the errno.
    if (!e && pipe2(result, O_CLOEXEC) < 0) e = errno;
    if (!e && (result_high = fcntl(result[1], F_DUPFD_CLOEXEC, floor)) < 0) e = errno;
    if (result[1] >= 0) close(result[1]);
    result[1] = result_high;
    if (e) {
        close(config_high);
        if (report_high >= 0) close(report_high);
        if (api_high >= 0) close(api_high);
        for (int i = 0; i < opened; i++) close(extra_high[i]);
        if (result[0] >= 0) close(result[0]);
        if (result[1] >= 0) close(result[1]);
        return -e;
    }
    // Blocked across the fork and the exec: the VM process keeps them blocked (a signal mask
    // survives execve) until it reads them from its signalfd, and one that reaches the launcher
    // meanwhile is forwarded as soon as the child's pid is known.
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t launcher = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        // execve gives caught signals their default action back and keeps ignored ones ignored
        // (as they were before the launcher's handlers). PR_SET_PDEATHSIG survives it (the
        // binary is neither set-id nor file-capable).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != launcher) _exit(127);  // the launcher died before prctl took effect
        int ce = 0;
        // fd 5 (the control socket) and 6... (the disks) may come without fd 4 or 5: those are
        // then marked close-on-exec.
        if (dup2(config_high, 3) < 0 || (report_high >= 0 && dup2(report_high, 4) < 0)
            || (api_high >= 0 && dup2(api_high, 5) < 0)) {
            ce = errno;
        }
        for (int i = 0; !ce && i < extra_count; i++) if (dup2(extra_high[i], 6 + i) < 0) ce = errno;
        if (ce) {
            // reported below
        } else if (report_high < 0 && syscall(SYS_close_range, 4, 4, 4u /* CLOSE_RANGE_CLOEXEC */) < 0) {
            ce = errno;
        } else if (api_high < 0 && syscall(SYS_close_range, 5, 5, 4u /* CLOSE_RANGE_CLOEXEC */) < 0) {
            ce = errno;
        } else if (syscall(SYS_close_range, 6 + extra_count, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) < 0) {
            ce = errno;
        } else {
            execve(path, argv, environ);
            ce = errno;
        }
        (void)!write(result[1], &ce, sizeof ce);
        _exit(127);
    }
    int fork_errno = errno;
    close(config_high);
    if (report_high >= 0) close(report_high);
    if (api_high >= 0) close(api_high);
    for (int i = 0; i < extra_count; i++) close(extra_high[i]);
    close(result[1]);
    if (pid < 0) {
        close(result[0]);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -fork_errno;
    }
    launcher_child = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    e = 0;
    ssize_t n;
    while ((n = read(result[0], &e, sizeof e)) < 0 && errno == EINTR) {}
    close(result[0]);
    if (n == (ssize_t)sizeof e) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        launcher_child = 0;
        return -(e ? e : EIO);
    }
    return pid;
}

int svm_launcher_wait(int pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1000 - errno;
    }
    launcher_child = 0;
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

int svm_launcher_stop_signal(void) { return launcher_signal; }

void svm_launcher_die_by(int sig) {
    svm_terminal_restore();
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);  // the launcher's core says nothing about the VM process
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);
}
