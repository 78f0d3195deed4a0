import CMicroHTTPD
import Glibc

/// Holds back the resumes of parked streaming connections while one thread makes a batch of writes, then resumes
/// them all at once (issue 14 item 2).
///
/// Each `MHD_resume_connection` wakes the connection's worker, and libmicrohttpd 0.9.75 then walks its whole list
/// of suspended connections to find the resumed ones: with thousands of open streams, a resume per token made the
/// workers walk thousands of entries per token. Resumed together, the connections of one scheduler tick cost one
/// wake-up and one walk per worker. Used around each batch of the scheduler's timers (the daemon wires it in
/// `Serve.swift`); a write on any other thread resumes at once, as before.
public enum ResumeBatch {
    /// The connections whose resume waits for the end of this thread's batch.
    private final class Pending {
        var connections: [OpaquePointer] = []
    }

    /// The thread-specific slot holding the open batch (a retained ``Pending``), nil outside a batch.
    private static let slot: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body`; a ``StreamBody`` written to during it (on this thread) is resumed when `body` returns, not at
    /// its write. Nested calls join the outer batch.
    public static func run(_ body: () -> Void) {
        if pthread_getspecific(slot) != nil { return body() }
        let pending = Unmanaged.passRetained(Pending())
        pthread_setspecific(slot, pending.toOpaque())
        body()
        pthread_setspecific(slot, nil)
        let connections = pending.takeRetainedValue().connections
        for connection in connections { MHD_resume_connection(connection) }
    }

    /// Inside a batch on this thread: keeps `connection`'s resume for the batch's end and returns true. The
    /// caller has already marked the connection as no longer suspended (under its lock), so nobody else resumes
    /// it, and a suspended connection is neither read nor released: the pointer stays valid until the resume.
    static func hold(_ connection: OpaquePointer) -> Bool {
        guard let raw = pthread_getspecific(slot) else { return false }
        Unmanaged<Pending>.fromOpaque(raw).takeUnretainedValue().connections.append(connection)
        return true
    }
}
