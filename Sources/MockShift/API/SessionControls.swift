import Foundation
import MockShiftHTTP

/// Test controls of WebSocket sessions (issue 13 item 5, SPEC §7 and §10): `GET /_mock/sessions` lists the caller's
/// sessions, `GET /_mock/sessions/{id}` shows one with its stored messages and the turns read from them, so a test
/// can check how each turn of a session ended without a WebSocket client of its own.
///
/// Everything here is read from the store (``Store/sessions(namespace:ownerID:status:)``,
/// ``Store/sessionMessages(namespace:sessionID:)``): a turn still streaming shows as a user message without an
/// answer (`in_progress`) until its answer is stored.
enum SessionControls {
    /// `GET /_mock/sessions[?owner_id=…][&status=open|terminated]`: the caller's sessions, oldest first, each as
    /// ``summary(_:messages:)`` renders it. 400 for another `status`.
    static func list(_ c: HandlerContext) throws -> Reply {
        if c.request.path.hasSuffix("/") { throw APIError(.notFound, "Session not found: the id is empty") }
        var status: SessionRecord.Status?
        if let raw = c.request.queryValue("status"), !raw.isEmpty {
            guard let s = SessionRecord.Status(rawValue: raw) else { throw APIError(.badRequest, "status must be open or terminated") }
            status = s
        }
        let owner = c.request.queryValue("owner_id").flatMap { $0.isEmpty ? nil : $0 }
        let sessions = try c.app.store.sessions(namespace: c.namespace, ownerID: owner, status: status)
        return .json(.ok, ["status": "success", "sessions": .array(sessions.map { .object(live(summary($0.session, messages: $0.messages), c.app)) })])
    }

    /// `GET /_mock/sessions/{id}`: one session of the caller with `messages` (as `get_messages` answers them) and
    /// `turns` (``turns(of:terminated:)``). 404 for an unknown id or another key's session.
    static func session(_ c: HandlerContext) throws -> Reply {
        let id = c.parameter("id")
        guard let session = try c.app.store.session(namespace: c.namespace, id: id) else {
            throw APIError(.notFound, "Session \(SessionSocket.short(id)) not found")
        }
        let messages = try c.app.store.sessionMessages(namespace: c.namespace, sessionID: id)
        var o = live(summary(session, messages: messages.count), c.app)
        o["messages"] = .array(messages.map(\.json))
        o["turns"] = .array(turns(of: messages, terminated: session.status == .terminated).map(JSON.object))
        return .json(.ok, ["status": "success", "session": .object(o)])
    }

    /// `id`, `owner_type`, `owner_id`, `status`, `created_at`, `terminated_at` (null while open) and
    /// `message_count` (messages stored).
    static func summary(_ s: SessionRecord, messages: Int) -> JSONObject {
        ["id": .string(s.id), "owner_type": .string(s.ownerType.rawValue), "owner_id": .string(s.ownerID),
         "status": .string(s.status.rawValue), "created_at": .string(iso8601(micros: s.createdAt)),
         "terminated_at": s.terminatedAt.map { .string(iso8601(micros: $0)) } ?? .null,
         "message_count": .int(Int64(messages))]
    }

    /// Adds what only the live side knows: `sockets` (sockets attached to the session now) and `live_turn` (the turn
    /// in progress: `message_id` of its answer, `user_text`, `text` so far, `run_id` when a run produces it,
    /// `awaiting_approval`, `started_at`; null when none).
    static func live(_ summary: JSONObject, _ app: MockShiftApp) -> JSONObject {
        var o = summary
        let id = summary["id"]?.stringValue ?? ""
        o["sockets"] = .int(Int64(app.sessionHub.socketCount(id)))
        if let turn = app.sessionHub.live(id) {
            let st = turn.state.withLock { $0 }
            o["live_turn"] = ["message_id": .string(turn.messageID), "user_text": .string(turn.userText), "text": .string(st.text),
                              "run_id": st.runID.map(JSON.string) ?? .null, "awaiting_approval": .bool(st.awaitingApproval != nil),
                              "started_at": .string(iso8601(micros: turn.startedAt))]
        } else {
            o["live_turn"] = .null
        }
        return o
    }

    // MARK: Turns

    /// How a turn ended, read from its answer message.
    enum Outcome: String {
        case completed, terminated, failed
        /// No answer stored yet (the turn is streaming).
        case inProgress = "in_progress"
        /// The agent asked to run a tool and waits for the user's reply (SPEC §11).
        case awaitingApproval = "awaiting_approval"
    }

    /// The turns of a session, read from its stored messages in order: a turn is the user's message (several
    /// consecutive ones for one `post_messages`) and the object's messages after it (tool calls, approval requests,
    /// the user's approval replies, the answer). Its answer is the last `data_type_message` or `error_message` the
    /// object sent in it, and its `outcome` comes from that answer's `content.status` (API-CHAT §2.8): `Complete` →
    /// `completed`, `Terminated` → `terminated`, `Streaming` → `in_progress`, `Failed` or anything else → `failed`
    /// (an `error_message` too, with its `error`). A turn without an answer is `awaiting_approval` when its last
    /// message is a `tool_call_approval`, `terminated` in a terminated session, else `in_progress`. Object messages
    /// before the first user message belong to no turn.
    ///
    /// Each turn: `index`, `message_ids` (all of its messages), `user_text` (the text of its first user message
    /// that has one, as `SessionMessage.from_dict` reads text), `answer_message_id` and `answer` (its text; null
    /// without an answer or for an `error_message`), `outcome`, `error` (when the answer says why it failed), `started_at` (its first message) and
    /// `ended_at` (its answer's time, null without one).
    static func turns(of messages: [SessionMessageRecord], terminated: Bool) -> [JSONObject] {
        var groups: [(user: [SessionMessageRecord], replies: [SessionMessageRecord])] = []
        for message in messages {
            if isUser(message) && !isApprovalReply(message) {
                if let last = groups.indices.last, groups[last].replies.isEmpty {
                    groups[last].user.append(message)  // post_messages: one turn of several user messages
                } else {
                    groups.append(([message], []))
                }
            } else if let last = groups.indices.last {
                groups[last].replies.append(message)
            }
        }
        return groups.enumerated().map { index, group in
            let all = group.user + group.replies
            let answer = group.replies.last { !isUser($0) && ["data_type_message", "error_message"].contains(contentType($0)) }
            var outcome: Outcome
            var error: String?
            if let answer {
                (outcome, error) = Self.outcome(of: answer.content)
            } else if group.replies.last.map(contentType) == "tool_call_approval" {
                outcome = .awaitingApproval
            } else {
                outcome = terminated ? .terminated : .inProgress
            }
            if outcome == .inProgress && terminated { outcome = .terminated }
            var o: JSONObject = ["index": .int(Int64(index)), "message_ids": .array(all.map { .string($0.id) }),
                                 "user_text": .string(group.user.lazy.compactMap(text).first ?? ""),
                                 "answer_message_id": answer.map { .string($0.id) } ?? .null,
                                 "answer": answer.flatMap { contentType($0) == "data_type_message" ? text($0) : nil }.map(JSON.string) ?? .null,
                                 "outcome": .string(outcome.rawValue)]
            if let error { o["error"] = .string(error) }
            o["started_at"] = all.first.map { .string(iso8601(micros: $0.createdAt)) } ?? .null
            o["ended_at"] = answer.map { .string(iso8601(micros: $0.createdAt)) } ?? .null
            return o
        }
    }

    /// The outcome an answer's content says, and the error it gives when it failed.
    static func outcome(of content: JSONObject) -> (Outcome, String?) {
        let error = content["error"]?.stringValue
        if content["type"]?.stringValue == "error_message" { return (.failed, error ?? "error") }
        switch content["status"]?.stringValue?.lowercased() {
        case "complete"?: return (.completed, nil)
        case "terminated"?: return (.terminated, nil)
        case "streaming"?: return (.inProgress, nil)
        case let other: return (.failed, error ?? other.map { "status \($0)" } ?? "no status")
        }
    }

    /// The user's messages have a `sender.user_id` (API-CHAT §2.8); the chatbot's or agent's an `object_id`.
    static func isUser(_ m: SessionMessageRecord) -> Bool { m.sender["user_id"] != nil && m.sender["object_id"] == nil }

    /// An approval reply (API-CHAT §2.9) is a user message inside the turn it answers, not a new turn.
    static func isApprovalReply(_ m: SessionMessageRecord) -> Bool {
        let type = m.content["type"]?.stringValue ?? m.content["type_string"]?.stringValue
        return type == "response_message" || m.content["value"]?["tool_call_approval"] != nil
    }

    static func contentType(_ m: SessionMessageRecord) -> String? { m.content["type"]?.stringValue }

    /// A message's text as `SessionMessage.from_dict` reads it (API-CHAT §2.8): `value` of a `data_type_message`
    /// (JSON text when it is not a string), `error` of an `error_message`, `content` or `tool_name` of `thinking`,
    /// `tool_call` and `agent_task`; a string `value` of any other type.
    static func text(_ m: SessionMessageRecord) -> String? {
        let c = m.content
        switch contentType(m) {
        case "data_type_message"?:
            guard let value = c["value"], value != .null else { return nil }
            return value.stringValue ?? value.encodedString()
        case "error_message"?: return c["error"]?.stringValue
        case "thinking"?, "tool_call"?, "agent_task"?: return c["content"]?.stringValue ?? c["tool_name"]?.stringValue
        default: return c["value"]?.stringValue
        }
    }
}

/// Stopping a session (SPEC §10 `terminate_session`), from a client's frame or from outside it: the dashboard's
/// Stop button on a live session turn (issue 13 item 5), through `POST /_mock/sessions/{id}/terminate`. Both go
/// through ``terminate(_:namespace:id:)``, so a session stops the same way whoever stops it.
extension SessionControls {
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
