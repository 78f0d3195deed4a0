import Foundation
import MockShiftHTTP

/// Stopping a session (SPEC §10 `terminate_session`), from a client's frame or from outside it: the dashboard's
/// Stop button on a live session turn (issue 13 item 5), through `POST /_mock/sessions/{id}/terminate`. Both go
/// through ``terminate(_:namespace:id:)``, so a session stops the same way whoever stops it.
enum SessionControls {
    /// What ``terminate(_:namespace:id:)`` did.
    struct Terminated {
        /// The session as stored afterwards (status `terminated`).
        let session: SessionRecord
        /// A turn was live and was stopped (its text so far stored with status `Terminated`).
        let stoppedTurn: Bool
        /// The sockets that were attached to the session, now detached (no frame of it reaches them any more).
        let sockets: [WebSocket]
    }

    /// Terminates session `id` of `namespace` (SPEC §10): it is stored terminated (later `connect_session` and
    /// `post_message` are refused; harmless twice), its turn in progress stops at once (no further frame of it
    /// goes out, and its text so far is stored as the answer with status `Terminated` before this returns), and
    /// every socket is detached from it. Returns nil when `namespace` has no such session. Throws what the store
    /// throws.
    static func terminate(_ app: MockShiftApp, namespace: String, id: String) throws -> Terminated? {
        guard let session = try app.store.terminateSession(namespace: namespace, id: id, at: wallClockMicros()) else {
            return nil
        }
        var stopped = false
        if let turn = app.sessionHub.live(id), turn.namespace == namespace {
            stopped = !turn.state.withLock { $0.ended }
            turn.silenceAndStop()
        }
        return Terminated(session: session, stoppedTurn: stopped, sockets: app.sessionHub.detachAll(from: id))
    }

    /// `POST /_mock/sessions/{id}/terminate` (a test control; the dashboard's Stop on a session turn): terminates
    /// the caller's session `id` exactly as its client's `terminate_session` frame would (see
    /// ``terminate(_:namespace:id:)``), then closes every socket that was attached to it with Close 1000
    /// `session terminated`, so an SDK client's `listen()` ends. Answers
    /// `{"status":"success","session_id","session_status":"terminated","stopped_turn":Bool,"closed_sockets":N}`
    /// once the stopped turn is stored; 404 for a session the caller's key does not have.
    static func terminate(_ c: HandlerContext) throws -> Reply {
        let id = c.parameter("id")
        guard let done = try terminate(c.app, namespace: c.namespace, id: id) else {
            throw APIError(.notFound, "Session \(SessionSocket.short(id)) not found")
        }
        for socket in done.sockets { socket.close(code: 1000, reason: "session terminated") }
        return .json(.ok, ["status": "success", "session_id": .string(done.session.id),
                           "session_status": .string(done.session.status.rawValue), "stopped_turn": .bool(done.stoppedTurn),
                           "closed_sockets": .int(Int64(done.sockets.count))])
    }
}
