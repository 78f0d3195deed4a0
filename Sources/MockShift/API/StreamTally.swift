import MockShiftHTTP
import Synchronization

/// Open streams (a run's Server-Sent Events, the live feed) per namespace, for the caller's `open_streams` in
/// `GET /_mock/stats` (issue 11 item 14); the transport counts every stream but knows no namespaces.
///
/// A stream is counted from ``track(_:namespace:)`` until the transport releases its connection
/// (`StreamBody.onClose`), or until the body is dropped unsent (a fault's delay outlived the client): the
/// count is held by a ticket that the close handler owns, so it goes whichever way the handler goes.
final class StreamTally: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    /// Counts `body` as a stream of `namespace` until it closes.
    func track(_ body: StreamBody, namespace: String) {
        counts.withLock { $0[namespace, default: 0] += 1 }
        let ticket = Ticket(tally: self, namespace: namespace)
        body.onClose { withExtendedLifetime(ticket) {} }
    }

    /// Open streams of `namespace`.
    func count(namespace: String) -> Int { counts.withLock { $0[namespace] ?? 0 } }

    fileprivate func release(_ namespace: String) {
        counts.withLock { counts in
            let left = (counts[namespace] ?? 1) - 1
            counts[namespace] = left > 0 ? left : nil
        }
    }

    /// One counted stream; uncounts it when freed (with the close handler that holds it).
    private final class Ticket: Sendable {
        let tally: StreamTally
        let namespace: String
        init(tally: StreamTally, namespace: String) {
            self.tally = tally
            self.namespace = namespace
        }
        deinit { tally.release(namespace) }
    }
}
