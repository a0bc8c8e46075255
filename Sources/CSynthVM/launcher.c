// The launcher side of `synthvm run` (Sources/synthvm/VMProcessLauncher.swift): each VM life runs
// in a forked process whose every thread ends up filtered; the launcher only waits, restarts it
// after a guest reset, passes SIGINT/SIGTERM on and ends the way the VM process ended. Signal
// handling is here because a handler must be async-signal-safe.
#include "csynthvm.h"
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
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

int svm_launcher_fork(void) {
    // Blocked across the fork: the child keeps them blocked, and one that reaches the launcher
    // meanwhile is forwarded as soon as the child's pid is known.
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t launcher = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -e;
    }
    if (pid == 0) {
        launcher_child = 0;
        // Back to what they were before the launcher's handlers (ignored stays ignored).
        if (signal(SIGINT, SIG_DFL) == SIG_IGN) signal(SIGINT, SIG_IGN);
        if (signal(SIGTERM, SIG_DFL) == SIG_IGN) signal(SIGTERM, SIG_IGN);
        svm_terminal_forget();
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != launcher) _exit(127);  // the launcher died before prctl took effect
        return 0;
    }
    launcher_child = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
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
