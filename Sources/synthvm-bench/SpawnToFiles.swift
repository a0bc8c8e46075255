import Glibc

/// Starts `argv` (argv[0] a path) with stdin `/dev/null` and stdout and stderr written to the
/// files `stdout` and `stderr` (created or truncated, 0644); returns its pid, for the caller to
/// reap. The soaks (`faults`, `hostile`) run `synthvm run` this way and read the files.
func spawnToFiles(_ argv: [String], stdout: String, stderr: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
    guard rc == 0 else { throw BenchError("posix_spawn \(argv[0]): " + String(cString: strerror(rc))) }
    return pid
}
