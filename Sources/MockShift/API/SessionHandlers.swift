import Foundation
import Logging
import MockShiftHTTP

/// WebSocket sessions (SPEC §10, API-CHAT.md §2): the upgrade route and the session protocol above the
/// transport's ``WebSocket``. The transport frames; this file reads each text message as one JSON frame and
/// answers with JSON frames, `type` first and `session_id` second.
enum SessionHandlers {
    /// `GET /v1/ws/session` and `GET /ws/session` (the SDK's URL with `VECTORSHIFT_WS_URL` set, API-CHAT §2.1):
    /// the RFC 6455 handshake, after authentication (the key rules of SPEC §7 apply to the upgrade: 401 JSON
    /// before any upgrade). 400 for a request that is not a valid upgrade, 426 with `Sec-WebSocket-Version: 13`
    /// for another version; otherwise 101 and the socket belongs to a ``SessionSocket`` of the caller's namespace.
    static func open(_ c: HandlerContext) throws -> Reply {
        let accept: String
        do {
            accept = try WebSocketHandshake.check(c.request)
        } catch {
            switch error {
            case let .invalid(message): throw APIError(.badRequest, message)
            case let .unsupportedVersion(message): throw APIError(.upgradeRequired, message)
            }
        }
        let frames = FrameTap(journal: c.app.journal, namespace: c.namespace, path: c.request.path,
                              authorization: c.request.head.headerFields[.authorization])
        c.writer.send(.webSocketUpgrade(accept: accept, handler: SessionSocket(app: c.app, namespace: c.namespace, frames: frames)))
        return .later
    }
}

/// One client's WebSocket, speaking the session protocol (API-CHAT §2.2–2.3, SPEC §10) for one namespace: each
/// text message is one JSON frame, answered with JSON frames whose `type` comes first and `session_id` second.
/// Its calls come on the socket's own serial queue (``WebSocketHandler``), so the frames of one socket are
/// handled one at a time, in order, and the client's Close is answered only after them (the transport holds it),
/// so a `terminate_session` is stored by the time `Session.terminate()` returns.
///
/// Served: `create_session` → `session_created` (a chatbot or a conversational agent of the caller's key),
/// `connect_session` → its ack with `success` (false with `error` for an unknown,
/// another key's or a terminated session), `get_messages` → the stored messages, `ping_session` → `pong`,
/// `disconnect_session` (the session stays), `terminate_session` (for good), `post_message`/`post_messages` (a
/// turn: ``ChatbotSessionTurn``, ``AgentSessionTurn``; an approval reply: ``AgentSessionTurn/answer(_:session:parent:decision:socket:)``). A frame that is not a JSON object, lacks a field or
/// has an unknown type gets an `error` frame naming its `request_type`, and the socket stays open.
final class SessionSocket: WebSocketHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched only from the socket's serial queue (WebSocketHandler's contract).
    let app: MockShiftApp
    let namespace: String
    private var socket: WebSocket?
    /// The session this socket last created or connected to: the `session_id` of error frames that name none.
    private var current: String?
    /// Journals every text frame in and out (`GET /_mock/requests`, kind `ws_frame`: no bodies).
    let frames: FrameTap

    /// - Parameter frames: what journals the frames (made from the upgrade request); nil: journalled without key or path.
    init(app: MockShiftApp, namespace: String, frames: FrameTap? = nil) {
        self.app = app
        self.namespace = namespace
        self.frames = frames ?? FrameTap(journal: app.journal, namespace: namespace, path: "", authorization: nil)
    }

    func webSocketDidOpen(_ socket: WebSocket) {
        self.socket = socket
        app.sessionHub.opened(socket, namespace: namespace)
    }

    func webSocketDidClose(_ socket: WebSocket, code: UInt16) {
        // A dropped socket leaves its sessions' turns running: they end and are stored (SPEC §10).
        app.sessionHub.closed(socket, namespace: namespace)
        self.socket = nil
    }

    /// A frame the client got wrong: answered with an `error` frame carrying its `request_type`.
    struct FrameError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    func webSocket(_ socket: WebSocket, didReceiveText text: String) {
        let parsed = (try? JSON.parse(text))?.objectValue
        frames.received(parsed, size: text.utf8.count)
        guard let frame = parsed else {
            return send(Self.frame("error", current, [("error", "frame is not a JSON object"), ("request_type", .null)]))
        }
        let type = frame["type"]?.stringValue
        let named = frame["session_id"]?.stringValue
        do {
            guard let type else { throw FrameError("frame has no type (a string)") }
            switch type {
            case "create_session": try create(frame)
            case "connect_session": try connect(try sessionID(frame, type))
            case "disconnect_session": try disconnect(try sessionID(frame, type))
            case "terminate_session": try terminate(try sessionID(frame, type))
            case "get_messages": try messages(try sessionID(frame, type))
            case "ping_session": send(Self.frame("pong", try sessionID(frame, type)))
            case "post_message", "post_messages": try post(type, try sessionID(frame, type), frame)
            default: throw FrameError("unknown frame type \(Self.short(type))")
            }
        } catch let error as FrameError {
            send(Self.frame("error", named ?? current, [("error", .string(error.message)), ("request_type", type.map(JSON.string) ?? .null)]))
        } catch {
            let message = MockShiftApp.storageUnavailable(error)?.message ?? "internal error: \(error)"
            app.logger.warning("session frame \(type.map(Self.short) ?? "?") failed: \(message)")
            send(Self.frame("error", named ?? current, [("error", .string(message)), ("request_type", type.map(JSON.string) ?? .null)]))
        }
    }

    // MARK: Frames

    /// `create_session {object_type, object_id}` → `session_created` with the new id (API-CHAT §2.2). The owner must
    /// exist for the caller's key; a failure is an `error` frame, the answer the SDK fails fast on (a failed
    /// `create_session` ack would leave it waiting 30 s, API-CHAT §2.3).
    private func create(_ frame: JSONObject) throws {
        guard let ownerType = frame["object_type"]?.stringValue, let ownerID = frame["object_id"]?.stringValue,
              !ownerID.isEmpty else {
            throw FrameError("create_session needs object_type (chatbot or agent) and object_id")
        }
        switch SessionRecord.OwnerType(rawValue: ownerType) {
        case .chatbot?:
            guard try app.store.chatbot(namespace: namespace, id: ownerID) != nil else {
                throw FrameError("chatbot \(Self.short(ownerID)) not found")
            }
        case .agent?:
            // Conversational agents only (SPEC §11): a functional one runs over HTTP.
            guard let agent = try app.store.agent(namespace: namespace, id: ownerID) else {
                throw FrameError("agent \(Self.short(ownerID)) not found")
            }
            guard agent.isConversational else {
                throw FrameError("agent \(agent.id) is functional: run it with agent.run(inputs=…) over HTTP, not in a session")
            }
        case nil:
            throw FrameError("object_type must be chatbot or agent, not \(Self.short(ownerType))")
        }
        let session = SessionRecord(id: IDs.make(), namespace: namespace,
                                    ownerType: SessionRecord.OwnerType(rawValue: ownerType) ?? .chatbot, ownerID: ownerID,
                                    createdAt: wallClockMicros())
        try app.store.createSession(session)
        current = session.id
        if let socket { app.sessionHub.attach(socket, frames, to: session.id) }
        send(Self.frame("session_created", session.id, [("object_type", .string(ownerType)), ("object_id", .string(ownerID))]))
    }

    /// `connect_session` → `{"type":"connect_session","session_id":S,"success":true}`, or `success:false` with the
    /// reason (SPEC §10; the SDK raises `SessionError` naming it).
    private func connect(_ id: String) throws {
        guard let session = try app.store.session(namespace: namespace, id: id) else {
            return send(Self.frame("connect_session", id, [("success", false), ("error", .string("session \(Self.short(id)) not found"))]))
        }
        guard session.status == .open else {
            return send(Self.frame("connect_session", id, [("success", false), ("error", .string("session \(id) was terminated"))]))
        }
        current = id
        // From now on this socket gets the session's frames: the rest of a live turn's deltas, then its end.
        if let socket { app.sessionHub.attach(socket, frames, to: id) }
        send(Self.frame("connect_session", id, [("success", true)]))
    }

    /// `disconnect_session`: this socket lets the session go; the session stays and can be resumed.
    private func disconnect(_ id: String) throws {
        guard try app.store.session(namespace: namespace, id: id) != nil else {
            return send(Self.frame("disconnect_session", id, [("success", false), ("error", .string("session \(Self.short(id)) not found"))]))
        }
        if current == id { current = nil }
        if let socket { app.sessionHub.detach(socket, from: id) }
        send(Self.frame("disconnect_session", id, [("success", true)]))
    }

    /// `terminate_session`: the session is terminated for good (stored before the client's Close is answered);
    /// harmless twice. Its turn in progress stops at once: no frame of it goes out any more, and its text so far
    /// is stored as the answer with status `Terminated` before this returns (SPEC §10). The SDK reads no answer;
    /// raw clients get an ack.
    private func terminate(_ id: String) throws {
        // The same stop as the dashboard's (POST /_mock/sessions/{id}/terminate): SessionControls.swift.
        guard let done = try SessionControls.terminate(app, namespace: namespace, id: id) else {
            return send(Self.frame("terminate_session", id, [("success", false), ("error", .string("session \(Self.short(id)) not found"))]))
        }
        if current == id { current = nil }
        send(Self.frame("terminate_session", id, [("success", true)]))
        // Other clients on the session learn it ended (found by a newcomer: a second socket's listen() waited
        // forever): Close 1000, as POST /_mock/sessions/{id}/terminate does.
        for other in done.sockets where other.id != socket?.id {
            other.close(code: 1000, reason: "session terminated")
        }
    }

    /// `get_messages` → `{"type":"get_messages","session_id":S,"messages":[…]}`, oldest first, each as
    /// `SessionMessage.from_dict` reads it (API-CHAT §2.8). An unknown session answers an empty list with
    /// `success:false`, so the SDK's `get_messages()` returns at once instead of waiting 30 s.
    private func messages(_ id: String) throws {
        guard try app.store.session(namespace: namespace, id: id) != nil else {
            return send(Self.frame("get_messages", id, [("messages", []), ("success", false),
                                                        ("error", .string("session \(Self.short(id)) not found"))]))
        }
        var messages = try app.store.sessionMessages(namespace: namespace, sessionID: id).map(\.json)
        // A turn still running: one message with the text so far, status `Streaming` (SPEC §10); none while it
        // waits for an approval (the stored approval request is its last message then).
        if let turn = app.sessionHub.live(id), turn.namespace == namespace,
           turn.state.withLock({ !$0.ended && $0.awaitingApproval == nil }) {
            messages.append(turn.liveMessage())
        }
        send(Self.frame("get_messages", id, [("messages", .array(messages))]))
    }

    /// `post_message` / `post_messages` (API-CHAT §2.2): one turn of the session's chatbot or agent (SPEC §10, §11): the ack with
    /// the user's `message_id`, `Processing`, deltas, the answer's `message_notification`, `Idle`. A failed ack
    /// (`success:false` with `error`, which the SDK turns into an `ERROR` event) for an unknown or terminated
    /// session, a turn already in progress, or an owner that is gone; an `error` frame for a malformed content.
    ///
    /// Faults (SPEC §7) apply to a turn as to the request `POST /v1/ws/session/turn`: `llm_fail_after_tokens` fails
    /// its LLM after N tokens, `status` refuses the turn (failed ack with the body's `error`), `drop` closes this
    /// socket (Close 1011) as the turn starts and `cut_stream_after_events` after N deltas; the turn itself goes on
    /// and is stored, as when a client vanishes.
    private func post(_ type: String, _ id: String, _ frame: JSONObject) throws {
        func refuse(_ reason: String) { send(Self.frame(type, id, [("success", false), ("error", .string(reason))])) }
        guard let session = try app.store.session(namespace: namespace, id: id) else {
            return refuse("session \(Self.short(id)) not found")
        }
        guard session.status == .open else { return refuse("session \(id) was terminated") }
        // An approval reply (API-CHAT §2.9) answers the live turn's approval request instead of starting a turn.
        if type == "post_message", let reply = try AgentSessionTurn.approvalReply(in: frame) {
            if let socket { app.sessionHub.attach(socket, frames, to: id) }
            current = id
            return try AgentSessionTurn.answer(app, session: session, parent: reply.parent, decision: reply.decision, socket: self)
        }
        if app.sessionHub.live(id) != nil { return refuse("a turn is in progress") }
        let items = try SessionContent.items(of: frame, type: type)
        let effect = app.faults.match(namespace: namespace, method: "POST", path: "/v1/ws/session/turn")
        if let response = effect?.response {
            return refuse(response.body.objectValue?["error"]?.stringValue ?? "injected fault (status \(response.status))")
        }
        // Frames of this session reach this socket even when it posts without a connect_session first.
        if let socket { app.sessionHub.attach(socket, frames, to: id) }
        current = id
        do {
            switch session.ownerType {
            case .chatbot:
                try ChatbotSessionTurn.start(app, session: session, type: type, items: items, socket: self, effect: effect)
            case .agent:
                try AgentSessionTurn.start(app, session: session, type: type, items: items, socket: self, effect: effect)
            }
        } catch let refused as ChatbotSessionTurn.Refused {
            return refuse(refused.message)
        }
        if let socket, let effect {
            if effect.drop {
                socket.close(code: 1011, reason: "injected fault: connection dropped")
            } else if let after = effect.cutStreamAfter, let turn = app.sessionHub.live(id) {
                turn.closeAfterDeltas(after, socket)
            }
        }
    }

    /// Stores the user's message(s) of a turn, in order; returns the last one's id (the ack's `message_id`).
    static func storeUserMessages(_ app: MockShiftApp, session: String, _ items: [SessionContent]) throws -> String {
        var last = ""
        let now = wallClockMicros()
        for item in items {
            last = IDs.make()
            try app.store.appendSessionMessage(SessionMessageRecord(id: last, sessionID: session, sender: userSender,
                                                                    content: item.content(), createdAt: now))
        }
        return last
    }

    /// The `sender` of the user's messages (`SessionMessage.from_dict` reads `user_id` as USER).
    static let userSender: JSONObject = ["user_id": "user"]

    // MARK: Helpers

    /// The frame's `session_id`, which `type` requires.
    private func sessionID(_ frame: JSONObject, _ type: String) throws -> String {
        guard let id = frame["session_id"]?.stringValue, !id.isEmpty else { throw FrameError("\(type) needs session_id (a string)") }
        return id
    }

    func send(_ frame: JSONObject) {
        let bytes = JSON.object(frame).encoded()
        if socket?.send(utf8: bytes) == true { frames.sent(frame, size: bytes.count) }
    }

    /// A server frame: `type` first, `session_id` second (SPEC §10), then `rest` in order.
    static func frame(_ type: String, _ sessionID: String?, _ rest: [(String, JSON)] = []) -> JSONObject {
        JSONObject([("type", .string(type)), ("session_id", sessionID.map(JSON.string) ?? .null)] + rest)
    }

    /// Client text quoted in a message, cut to 64 characters (a frame may carry megabytes).
    static func short(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(64)) + "…"
    }
}
