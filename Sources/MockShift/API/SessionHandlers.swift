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
        c.writer.send(.webSocketUpgrade(accept: accept, handler: SessionSocket(app: c.app, namespace: c.namespace)))
        return .later
    }
}

/// One client's WebSocket, speaking the session protocol (API-CHAT §2.2–2.3) for one namespace. Its calls come
/// on the socket's own serial queue (``WebSocketHandler``), so frames of one socket are handled one at a time,
/// in order.
final class SessionSocket: WebSocketHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched only from the socket's serial queue (WebSocketHandler's contract).
    let app: MockShiftApp
    let namespace: String
    private var socket: WebSocket?

    init(app: MockShiftApp, namespace: String) {
        self.app = app
        self.namespace = namespace
    }

    func webSocketDidOpen(_ socket: WebSocket) {
        self.socket = socket
    }

    func webSocket(_ socket: WebSocket, didReceiveText text: String) {
        guard let frame = try? JSON.parse(text), let object = frame.objectValue else {
            return send(Self.errorFrame(sessionID: nil, "frame is not a JSON object", requestType: nil))
        }
        let type = object["type"]?.stringValue
        send(Self.errorFrame(sessionID: object["session_id"]?.stringValue, "session frames are not served yet",
                             requestType: type))
    }

    func webSocketDidClose(_ socket: WebSocket, code: UInt16) {
        self.socket = nil
    }

    private func send(_ frame: JSONObject) {
        socket?.send(utf8: JSON.object(frame).encoded())
    }

    /// `{"type":"error","session_id":S,"error":…,"request_type":T}` (API-CHAT §2.3: the SDK reads `error` and
    /// `request_type`); the socket stays open.
    static func errorFrame(sessionID: String?, _ message: String, requestType: String?) -> JSONObject {
        ["type": "error", "session_id": sessionID.map(JSON.string) ?? .null, "error": .string(message),
         "request_type": requestType.map(JSON.string) ?? .null]
    }
}
