import Dispatch
import Foundation
import MockShiftHTTP
import Synchronization

/// The live side of sessions (SPEC §10): which sockets are attached to each session, and each session's turn in
/// progress. A session's frames go to every socket attached to it (the one that created or connected it; a
/// `disconnect_session`, a `terminate_session` or a closed socket detaches), so a client that resumes a session
/// mid-turn gets the rest of that turn's deltas and no replay. At most one turn per session is live.
final class SessionHub: Sendable {
    private struct State {
        /// Session id → socket id → socket, with the journal tap its frames are recorded through.
        var sockets: [String: [UInt64: (socket: WebSocket, frames: FrameTap)]] = [:]
        /// Socket id → the sessions it is attached to (`sockets` the other way round): a closing socket detaches
        /// in the time of its own sessions, not of every session's (scripts/bench-sessions: 900 sockets closing
        /// at once each scanned all 1,000 sessions under this lock, which every delta's broadcast takes too).
        var sessionsOf: [UInt64: Set<String>] = [:]
        /// Session id → its turn in progress.
        var turns: [String: SessionTurn] = [:]
        /// Namespace → its open session sockets (attached to a session or not).
        var open: [String: Set<UInt64>] = [:]
    }

    /// A session socket of `namespace` opened (counted in `GET /_mock/stats` `session_sockets`).
    func opened(_ socket: WebSocket, namespace: String) {
        state.withLock { _ = $0.open[namespace, default: []].insert(socket.id) }
    }

    /// The socket closed: no longer counted, and detached from every session (its sessions' turns go on).
    func closed(_ socket: WebSocket, namespace: String) {
        state.withLock { s in
            s.open[namespace]?.remove(socket.id)
            if s.open[namespace]?.isEmpty == true { s.open[namespace] = nil }
        }
        detach(socket, from: nil)
    }

    /// Open session sockets of `namespace`.
    func openSocketCount(namespace: String) -> Int { state.withLock { $0.open[namespace]?.count ?? 0 } }
    private let state = Mutex(State())

    /// Attaches `socket` to `sessionID`: from now on it gets the session's frames (journalled through `frames`).
    func attach(_ socket: WebSocket, _ frames: FrameTap, to sessionID: String) {
        state.withLock { s in
            s.sockets[sessionID, default: [:]][socket.id] = (socket, frames)
            s.sessionsOf[socket.id, default: []].insert(sessionID)
        }
    }

    /// Detaches `socket` from `sessionID`, or from every session when nil (the socket closed).
    func detach(_ socket: WebSocket, from sessionID: String?) {
        state.withLock { s in
            let sessions = sessionID.map { [$0] } ?? Array(s.sessionsOf[socket.id] ?? [])
            for id in sessions {
                s.sockets[id]?[socket.id] = nil
                if s.sockets[id]?.isEmpty == true { s.sockets[id] = nil }
                s.sessionsOf[socket.id]?.remove(id)
            }
            if s.sessionsOf[socket.id]?.isEmpty == true { s.sessionsOf[socket.id] = nil }
        }
    }

    /// Detaches every socket from `sessionID` (terminated or deleted); returns them, so the caller may close them
    /// (`POST /_mock/sessions/{id}/terminate` does).
    @discardableResult
    func detachAll(from sessionID: String) -> [WebSocket] {
        state.withLock { s in
            let detached = (s.sockets.removeValue(forKey: sessionID) ?? [:]).values.map(\.socket)
            for socket in detached {
                s.sessionsOf[socket.id]?.remove(sessionID)
                if s.sessionsOf[socket.id]?.isEmpty == true { s.sessionsOf[socket.id] = nil }
            }
            return detached
        }
    }

    /// How many sockets are attached to `sessionID`.
    func socketCount(_ sessionID: String) -> Int { state.withLock { $0.sockets[sessionID]?.count ?? 0 } }

    /// Sends `frame` (encoded once) to every socket attached to `sessionID`, and journals it per socket.
    func broadcast(_ sessionID: String, _ frame: JSONObject) {
        let targets = state.withLock { Array(($0.sockets[sessionID] ?? [:]).values) }
        Self.send(frame, to: targets)
    }

    private static func send(_ frame: JSONObject, to targets: some Collection<(socket: WebSocket, frames: FrameTap)>) {
        guard !targets.isEmpty else { return }
        let bytes = JSON.object(frame).encoded()
        for target in targets where target.socket.send(utf8: bytes) { target.frames.sent(frame, size: bytes.count) }
    }

    /// Claims `sessionID` for a new turn; nil when one is already live ("a turn is in progress", SPEC §10).
    func begin(_ turn: SessionTurn) -> Bool {
        state.withLock { s in
            guard s.turns[turn.sessionID] == nil else { return false }
            s.turns[turn.sessionID] = turn
            return true
        }
    }

    /// The live turn of `sessionID`, if any.
    func live(_ sessionID: String) -> SessionTurn? { state.withLock { $0.turns[sessionID] } }

    /// Frees the session of `turn` for its next turn; `finalFrame` (the turn's `Idle`) goes to the session's
    /// sockets in the same step, so no post can see the turn live after its client read that frame.
    func end(_ turn: SessionTurn, finalFrame: JSONObject? = nil) {
        state.withLock { s in
            if s.turns[turn.sessionID] === turn { s.turns[turn.sessionID] = nil }
            if let finalFrame { Self.send(finalFrame, to: (s.sockets[turn.sessionID] ?? [:]).values) }
        }
    }

    /// Live turns of `namespace` (every namespace when nil).
    func liveTurns(namespace: String?) -> [SessionTurn] {
        state.withLock { s in s.turns.values.filter { namespace == nil || $0.namespace == namespace } }
    }

}

/// One session turn in progress (SPEC §10): the user's message(s) are stored, the answer is being produced. It
/// owns the answer's `message_id`, numbers its `message_delta` frames from 0 and keeps the text so far (what
/// `get_messages` shows as `Streaming`). Frames of the turn go out through the ``SessionHub`` in the order they
/// are produced; once the turn is silenced (`terminate_session`) none does.
final class SessionTurn: Sendable {
    /// Most `message_delta` frames one turn sends (SPEC §10): past the 255th, text is held and sent as one last
    /// delta when the answer completes.
    static let maxDeltas = 256

    let sessionID: String
    let namespace: String
    /// The answer's `sender`: `{"object_id":…, "object_type":"chatbot"|"agent"}`.
    let sender: JSONObject
    /// The answer's message id.
    let messageID: String
    /// The user's text, as the dashboard and `/_mock/sessions` show the turn before it is stored.
    let userText: String
    /// Microseconds since 1970.
    let startedAt: Int64
    private let hub: SessionHub

    struct State {
        /// The run producing the answer, once started.
        var runID: String?
        /// The answer so far (every delta's text, held text included).
        var text = ""
        /// `message_delta` frames sent so far (the next frame's `index`).
        var deltas = 0
        /// Text past the delta cap, sent with the last delta.
        var held = ""
        /// Set by `terminate_session` (or a reset): no frame of this turn goes out any more.
        var silenced = false
        /// The answer was stored.
        var ended = false
        /// How to stop the answer's production at once (the run's terminate, or an approval wait's end).
        var stop: (@Sendable () -> Void)?
        /// An approval the turn waits for (agents, SPEC §11): the approval request's message id.
        var awaitingApproval: String?
        /// What goes on once that approval is answered (``AgentSessionTurn``): taken once, with the decision.
        var onApproval: (@Sendable (ApprovalDecision) -> Void)?
        /// A `cut_stream_after_events` fault: this socket is closed once that many deltas went out.
        var cut: (after: Int, socket: WebSocket)?
    }
    let state = Mutex(State())
    /// Signalled once the answer is stored.
    private let stored = DispatchSemaphore(value: 0)

    init(hub: SessionHub, sessionID: String, namespace: String, sender: JSONObject, userText: String) {
        self.hub = hub
        self.sessionID = sessionID
        self.namespace = namespace
        self.sender = sender
        self.messageID = IDs.make()
        self.userText = userText
        self.startedAt = wallClockMicros()
    }

    /// Sends `frame` to the session's sockets unless the turn is silenced. Ordered: called under the turn's lock.
    func send(_ frame: JSONObject) {
        state.withLock { st in
            guard !st.silenced else { return }
            hub.broadcast(sessionID, frame)
        }
    }

    /// New answer text: one `message_delta` with the next index (SPEC §10), or held past the cap.
    func delta(_ value: String) {
        guard !value.isEmpty else { return }
        state.withLock { st in
            st.text += value
            guard !st.silenced else { return }
            if st.deltas >= Self.maxDeltas - 1 {
                st.held += value
                return
            }
            sendDelta(value, &st)
        }
    }

    private func sendDelta(_ value: String, _ st: inout State) {
        let frame = SessionSocket.frame("message_delta", sessionID, [("message_id", .string(messageID)),
                                                                     ("index", .int(Int64(st.deltas))), ("value", .string(value))])
        st.deltas += 1
        hub.broadcast(sessionID, frame)
        if let cut = st.cut, st.deltas >= cut.after {
            st.cut = nil
            cut.socket.close(code: 1011, reason: "injected fault: connection cut")
        }
    }

    /// Closes `socket` (Close 1011) once `count` deltas of this turn went out (at once when they already did).
    func closeAfterDeltas(_ count: Int, _ socket: WebSocket) {
        let now = state.withLock { st -> Bool in
            if st.deltas >= count { return true }
            st.cut = (count, socket)
            return false
        }
        if now { socket.close(code: 1011, reason: "injected fault: connection cut") }
    }

    /// `participant_status` with `status` (`Processing`, `Idle`, `AwaitingApproval`), as the SDK reads it
    /// (API-CHAT §2.3: under `message`).
    func status(_ status: String) {
        send(statusFrame(status))
    }

    private func statusFrame(_ status: String) -> JSONObject {
        SessionSocket.frame("participant_status", sessionID, [("message", .object(JSONObject(
            [("status", .string(status))] + sender.entries)))])
    }

    /// The answer as stored and notified: `{"id","session_id","sender","content","created_at"}`.
    func answerMessage(content: JSONObject) -> SessionMessageRecord {
        SessionMessageRecord(id: messageID, sessionID: sessionID, sender: sender, content: content, createdAt: wallClockMicros())
    }

    /// The turn's answer so far, as `get_messages` lists a turn still running (status `Streaming`; SPEC §10).
    func liveMessage() -> JSON {
        let text = state.withLock { $0.text }
        return answerMessage(content: ["type": "data_type_message", "value": .string(text), "status": "Streaming"]).json
    }

    /// Ends the turn: stores `content` as the answer, then (unless silenced) flushes held text, sends the
    /// notification frames `notify` gives and `Idle`; frees the session. Exactly once; later calls do nothing.
    func finish(_ app: MockShiftApp, content: JSONObject, notify: [JSONObject]) {
        let first = state.withLock { st -> Bool in
            if st.ended { return false }
            st.ended = true
            return true
        }
        guard first else { return }
        do {
            try app.store.appendSessionMessage(answerMessage(content: content))
        } catch {
            app.logger.error("session \(sessionID): answer \(messageID) not stored: \(error)")
        }
        state.withLock { st in
            guard !st.silenced else { return }
            if !st.held.isEmpty {
                let held = st.held
                st.held = ""
                sendDelta(held, &st)
            }
            for frame in notify { hub.broadcast(sessionID, frame) }
        }
        // `Idle` and the session's release in one step: a client that posts as soon as it reads `Idle` finds the
        // session free (found by a test: the next turn was refused as "in progress").
        state.withLock { st in
            hub.end(self, finalFrame: st.silenced ? nil : statusFrame("Idle"))
        }
        stored.signal()
    }

    /// `terminate_session` (SPEC §10): no frame of the turn goes out from now on, its production stops at once,
    /// and this returns once the answer is stored (status `Terminated`), or after `timeout` seconds.
    func silenceAndStop(timeout: Double = 5) {
        let stop = state.withLock { st -> (@Sendable () -> Void)? in
            st.silenced = true
            return st.ended ? nil : st.stop
        }
        stop?()
        _ = stored.wait(timeout: .now() + timeout)
    }

    /// Sets how to stop the production; when the turn was silenced meanwhile, stops at once.
    func onStop(_ stop: @escaping @Sendable () -> Void) {
        let stopNow = state.withLock { st -> Bool in
            st.stop = stop
            return st.silenced && !st.ended
        }
        if stopNow { stop() }
    }
}
