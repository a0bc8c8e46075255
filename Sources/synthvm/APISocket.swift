import CSynthVM
import Glibc

/// The control socket's listening end (`synthvm run --api-socket PATH`, docs/api.md), created by
/// the launcher before any VM process exists, so before any seccomp filter, and handed to every
/// VM life as its fd 5. It outlives each VM process: a client's path stays valid across a guest
/// reset (`--on-reset restart`), connections made while the next life starts wait in the backlog.
struct APISocket {
    let path: String
    let fd: Int32
    /// Device and inode of the socket file we bound: `remove` unlinks only that file.
    let device: UInt64
    let inode: UInt64

    static let backlog: Int32 = 16

    /// Creates the socket at `path`, mode 0600 from the start (umask around bind), owned by the
    /// user running synthvm. An existing socket file is replaced only when nothing accepts on it
    /// (left by a synthvm that died); any other existing file is refused. Errors are one line.
    static func create(path: String) -> Result<APISocket, APISocketError> {
        guard !path.isEmpty else { return .failure(APISocketError(message: "--api-socket: empty path")) }
        guard path.utf8.count < 108 else {
            return .failure(APISocketError(message: "--api-socket \(path): longer than 107 bytes (a Unix socket path's limit)"))
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                return .failure(APISocketError(message: "--api-socket \(path): exists and is not a socket; not replacing it"))
            }
            let r = svm_api_probe(path)
            if r == 0 { return .failure(APISocketError(message: "--api-socket \(path): another process is serving it")) }
            guard r == -ECONNREFUSED else {
                return .failure(APISocketError(message: "--api-socket \(path): exists and cannot be checked: \(String(cString: strerror(-r)))"))
            }
            // Nobody listens: a stale socket from a synthvm that was killed.
            if unlink(path) != 0 && errno != ENOENT {
                return .failure(APISocketError(message: "--api-socket \(path): cannot remove the stale socket: \(String(cString: strerror(errno)))"))
            }
        } else if errno != ENOENT {
            return .failure(APISocketError(message: "--api-socket \(path): \(String(cString: strerror(errno)))"))
        }
        let fd = svm_api_listen(path, backlog)
        if fd < 0 { return .failure(APISocketError(message: "--api-socket \(path): \(String(cString: strerror(-fd)))")) }
        guard lstat(path, &st) == 0 else {
            close(fd)
            return .failure(APISocketError(message: "--api-socket \(path): \(String(cString: strerror(errno)))"))
        }
        return .success(APISocket(path: path, fd: fd, device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
    }

    /// Unlinks the socket file if it is still the one we bound.
    func remove() {
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode { unlink(path) }
    }
}

struct APISocketError: Error {
    let message: String
}
