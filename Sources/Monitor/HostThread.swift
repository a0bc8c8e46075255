import Glibc

/// A joinable pthread for vCPUs. The monitor stays off Foundation, so no `Thread`.
public struct HostThread: Sendable {
    private let handle: pthread_t

    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    public static func spawn(_ body: @escaping @Sendable () -> Void) throws(MonitorError) -> HostThread {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let r = pthread_create(&tid, nil, { ctx in
            let b = Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        if r != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw .config("pthread_create: \(String(cString: strerror(r)))")
        }
        return HostThread(handle: tid)
    }

    public func join() {
        pthread_join(handle, nil)
    }
}
