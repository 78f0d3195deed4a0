import Crypto
import Foundation
import HTTPTypes
import Synchronization

// The WebSocket side of the transport (SPEC §10, RFC 6455): the handshake check, the 101 answer that hands a
// connection over, and the connection object the layer above talks to. Framing is wslay's, and every upgraded
// socket is served by one event thread (`WebSocketLoop.swift`). Nothing here knows what the messages mean.

/// The HTTP side of an RFC 6455 opening handshake (SPEC §10: version 13, no extensions, no subprotocol).
///
/// ```swift
/// let accept = try WebSocketHandshake.check(request)     // throws WebSocketHandshake.Failure
/// writer.send(.webSocketUpgrade(accept: accept, handler: myHandler))
/// ```
public enum WebSocketHandshake {
    /// The GUID RFC 6455 §1.3 appends to the client's key before hashing.
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// The one protocol version served (RFC 6455 §4.4); sent as `Sec-WebSocket-Version` with a 426.
    public static let version = "13"

    /// Why a request is not an upgrade this server takes.
    public enum Failure: Error, Equatable, Sendable {
        /// Not a valid WebSocket opening handshake (not GET, no `Upgrade: websocket`, no `Connection: Upgrade`,
        /// no version, or a key that is not base64 of 16 bytes): answer 400 with the message.
        case invalid(String)
        /// A well-formed upgrade for another protocol version: answer 426 with `Sec-WebSocket-Version: 13`
        /// (RFC 6455 §4.4).
        case unsupportedVersion(String)

        /// What went wrong, for the error body.
        public var message: String {
            switch self {
            case let .invalid(message), let .unsupportedVersion(message): message
            }
        }
    }

    /// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64 of the SHA-1 of the key followed by
    /// ``guid`` (RFC 6455 §4.2.2; RFC 6455 §1.3's example key `dGhlIHNhbXBsZSBub25jZQ==` gives
    /// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`). swift-crypto's `Insecure.SHA1`: SHA-1 is what the protocol names, not a
    /// security choice of ours.
    public static func acceptValue(forKey key: String) -> String {
        Data(Insecure.SHA1.hash(data: Data((key + guid).utf8))).base64EncodedString()
    }

    /// Checks that `request` is an opening handshake this server takes and returns the `Sec-WebSocket-Accept`
    /// value to answer with. Throws ``Failure/invalid(_:)`` (400) or ``Failure/unsupportedVersion(_:)`` (426).
    ///
    /// Header names are matched case-insensitively and `Upgrade` / `Connection` as comma-separated token lists
    /// (`Connection: keep-alive, Upgrade` is fine). Offered extensions and subprotocols are ignored: the answer
    /// names none, which declines them (RFC 6455 §4.2.2).
    public static func check(_ request: Request) throws(Failure) -> String {
        let fields = request.head.headerFields
        func tokens(_ name: HTTPField.Name) -> [String] {
            fields[values: name].flatMap { $0.split(separator: ",") }
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        }
        guard request.head.method == .get else {
            throw .invalid("A WebSocket upgrade must be a GET request, not \(request.head.method.rawValue)")
        }
        guard tokens(.upgrade).contains("websocket") else {
            throw .invalid("Not a WebSocket upgrade: the request needs the header Upgrade: websocket")
        }
        guard tokens(.connection).contains("upgrade") else {
            throw .invalid("Not a WebSocket upgrade: the request needs the header Connection: Upgrade")
        }
        let versions = fields[values: .secWebSocketVersion].map { $0.trimmingCharacters(in: .whitespaces) }
        guard let offered = versions.first else {
            throw .invalid("Not a WebSocket upgrade: the request needs the header Sec-WebSocket-Version: 13")
        }
        guard versions.count == 1, offered == version else {
            throw .unsupportedVersion("WebSocket version \(versions.joined(separator: ", ")) is not supported; use 13")
        }
        let keys = fields[values: .secWebSocketKey]
        guard keys.count == 1, let key = keys.first?.trimmingCharacters(in: .whitespaces),
              let decoded = Data(base64Encoded: key), decoded.count == 16 else {
            throw .invalid("Not a WebSocket upgrade: Sec-WebSocket-Key must be the base64 of 16 bytes")
        }
        return acceptValue(forKey: key)
    }
}

/// The layer above's side of one WebSocket: what it is told about the connection. Every call for one socket
/// comes on that socket's own serial queue, in order: ``webSocketDidOpen(_:)`` first, then one
/// ``webSocket(_:didReceiveText:)`` per complete text message, then ``webSocketDidClose(_:code:)`` exactly once.
/// Never on the socket thread, so a handler may take its time (a database write) without holding other sockets.
/// The client's Close is answered once the handler has handled every message that came before it, so what those
/// messages changed is done when the client sees the connection closed. The socket keeps the handler until after
/// ``webSocketDidClose(_:code:)``, then lets it go.
public protocol WebSocketHandler: AnyObject, Sendable {
    /// The upgrade went through; `socket` can send from now on.
    func webSocketDidOpen(_ socket: WebSocket)
    /// One complete text message (fragments already joined, valid UTF-8, at most the configured maximum).
    func webSocket(_ socket: WebSocket, didReceiveText text: String)
    /// The connection is gone. `code` is the status of the client's Close frame if one came (1005 when it had
    /// none), else of the Close we sent, else 1006 (the connection just dropped).
    func webSocketDidClose(_ socket: WebSocket, code: UInt16)
}

/// The 101 answer that turns a request into a WebSocket and hands it to `handler`.
public struct WebSocketUpgrade: Sendable {
    /// The `Sec-WebSocket-Accept` value (``WebSocketHandshake/check(_:)``).
    public let accept: String
    /// Told about the connection once it is upgraded; dropped unused if the client goes away before that.
    public let handler: any WebSocketHandler

    public init(accept: String, handler: any WebSocketHandler) {
        self.accept = accept
        self.handler = handler
    }
}

extension Response {
    /// `101 Switching Protocols` with `Upgrade: websocket` and `Sec-WebSocket-Accept` (libmicrohttpd adds
    /// `Connection: Upgrade`); once sent, the connection belongs to `handler` through a ``WebSocket``.
    public static func webSocketUpgrade(accept: String, handler: any WebSocketHandler) -> Response {
        var response = Response(status: .switchingProtocols,
                                headerFields: [.upgrade: "websocket", .secWebSocketAccept: accept])
        response.body = .webSocket(WebSocketUpgrade(accept: accept, handler: handler))
        return response
    }
}

/// Limits of upgraded connections (SPEC §10), part of ``HTTPServerConfiguration``.
public struct WebSocketLimits: Sendable {
    /// Largest incoming message in bytes, fragments joined; a larger one is answered with Close 1009
    /// (wslay's maximum received message length). 4 MiB, the SDK's own limit for what it receives.
    public var maxMessageBytes: Int = 4 * 1024 * 1024
    /// Most outgoing bytes queued for one client (ours and wslay's queue, not the kernel's buffer); past it the
    /// queue is dropped and the socket gets Close 1008: a client that does not read costs bounded memory.
    public var maxQueuedBytes: Int = 8 * 1024 * 1024
    /// Most bytes of received messages waiting for the handler; past it the socket thread stops reading this
    /// socket until the handler has caught up to half of it (TCP then slows the client down).
    public var maxInboundBacklogBytes: Int = 16 * 1024 * 1024
    /// How long a closing handshake may take (our Close not yet sent, or the client's answer not yet come)
    /// before the connection is dropped, in seconds.
    public var closeGraceSeconds: Double = 5

    public init() {}
}

/// One upgraded connection, as the layer above sees it. Thread-safe: ``send(text:)`` and ``close(code:reason:)``
/// may be called from any thread; they queue and wake the socket thread (an `eventfd`), which alone touches the
/// socket and wslay's context.
public final class WebSocket: @unchecked Sendable {
    // @unchecked: what other threads touch is in `outgoing` and `handlerBox` (mutexes) or immutable; the fields
    // marked "socket thread" are used only by the `WebSocketLoop` thread that owns this socket.

    /// Unique per daemon, for logs and the layer above's tables.
    public let id: UInt64
    let fd: Int32
    /// libmicrohttpd's handle: the socket goes back through it (`cmhd_upgrade_close`), never through `close()`.
    let upgradeHandle: OpaquePointer
    let limits: WebSocketLimits
    let queue: DispatchQueue
    private let handlerBox: Mutex<(any WebSocketHandler)?>
    /// The socket thread serving this socket (a cycle while the socket is open: broken when the loop forgets it).
    let loop: WebSocketLoop

    struct Outgoing {
        /// Messages (already UTF-8) not yet handed to wslay.
        var messages: [[UInt8]] = []
        var messageBytes = 0
        /// Bytes handed to wslay and not yet written to the socket (updated by the socket thread).
        var inWslay = 0
        /// A Close the socket thread is to queue (code, reason).
        var closeRequest: (code: UInt16, reason: [UInt8])?
        /// No more messages are accepted: a Close was asked for, or the connection is finished.
        var closing = false
        /// The socket is in the loop's list of sockets with something to do.
        var scheduled = false
        /// Bytes of received messages handed to the handler's queue and not yet handled.
        var inbound = 0
        /// Reading is paused until the handler catches up (``WebSocketLimits/maxInboundBacklogBytes``).
        var readPaused = false
        /// The handler has handled every message that came before the client's Close: it may be answered.
        var closeReleased = false
    }
    let outgoing = Mutex(Outgoing())

    // Socket thread only.
    var context: OpaquePointer?
    /// This socket as wslay's user data: retained while wslay's context lives.
    var retained: Unmanaged<WebSocket>?
    var extraIn: [UInt8]
    var extraOffset = 0
    var interest: UInt32 = 0
    /// When the closing handshake must be over (DispatchTime nanoseconds); nil while open.
    var closeDeadline: UInt64?
    /// The client's Close came in and wslay queued the answer, which waits until the handler has handled the
    /// messages sent before it (so a `terminate_session` followed by Close is stored when the Close is answered).
    var closeHeld = false

    init(id: UInt64, fd: Int32, upgradeHandle: OpaquePointer, extraIn: [UInt8], handler: any WebSocketHandler,
         limits: WebSocketLimits, loop: WebSocketLoop) {
        self.loop = loop
        self.id = id
        self.fd = fd
        self.upgradeHandle = upgradeHandle
        self.extraIn = extraIn
        self.limits = limits
        self.handlerBox = Mutex(handler)
        self.queue = DispatchQueue(label: "mockshift.websocket.\(id)")
    }

    /// Queues one text message (a TEXT frame of `text`'s UTF-8). Returns false, sending nothing, once the
    /// socket is closing or closed. When the bytes queued for this client would pass
    /// ``WebSocketLimits/maxQueuedBytes``, the queue is dropped and the client gets Close 1008 instead.
    @discardableResult
    public func send(text: String) -> Bool { send(utf8: Array(text.utf8)) }

    /// ``send(text:)`` for text already encoded; `bytes` must be valid UTF-8 (JSON from `JSON.encoded()` is).
    @discardableResult
    public func send(utf8 bytes: [UInt8]) -> Bool {
        var queued = false
        let wake = outgoing.withLock { st -> Bool in
            guard !st.closing else { return false }
            if st.messageBytes + st.inWslay + bytes.count > limits.maxQueuedBytes {
                st.messages = []
                st.messageBytes = 0
                st.closing = true
                st.closeRequest = (1008, Array("outgoing queue over \(limits.maxQueuedBytes) bytes: the client does not read".utf8))
                return schedule(&st)
            }
            st.messages.append(bytes)
            st.messageBytes += bytes.count
            queued = true
            return schedule(&st)
        }
        if wake { loop.wake() }
        return queued
    }

    /// Starts the closing handshake: messages already queued go out, then a Close frame with `code` and
    /// `reason` (cut to 123 bytes, the most a Close frame holds); the connection ends when the client answers,
    /// or after ``WebSocketLimits/closeGraceSeconds``. Later calls, and sends, are ignored.
    public func close(code: UInt16 = 1000, reason: String = "") {
        let wake = outgoing.withLock { st -> Bool in
            guard !st.closing else { return false }
            st.closing = true
            var bytes: [UInt8] = []
            for character in reason {  // whole characters only: the reason must stay valid UTF-8
                let utf8 = Array(character.utf8)
                if bytes.count + utf8.count > 123 { break }
                bytes += utf8
            }
            st.closeRequest = (code, bytes)
            return schedule(&st)
        }
        if wake { loop.wake() }
    }

    /// False once a Close was asked for (by either side or a limit) or the connection ended.
    public var isOpen: Bool { !outgoing.withLock { $0.closing } }

    /// Marks the socket as having work for the socket thread; true when the thread must be woken.
    func schedule(_ st: inout Outgoing) -> Bool {
        if st.scheduled { return false }
        st.scheduled = true
        loop.markScheduled(self)
        return true
    }

    // MARK: Handler calls, on the socket's queue

    func deliverOpen() {
        queue.async { [self] in handlerBox.withLock { $0 }?.webSocketDidOpen(self) }
    }

    /// Hands a message to the handler; `size` counts against the inbound backlog until it has been handled,
    /// and reading resumes (the socket thread is woken) once the backlog is down to half the limit.
    func deliver(text: String, size: Int) {
        queue.async { [self] in
            handlerBox.withLock { $0 }?.webSocket(self, didReceiveText: text)
            let resume = outgoing.withLock { st -> Bool in
                st.inbound -= size
                guard st.readPaused, st.inbound <= limits.maxInboundBacklogBytes / 2 else { return false }
                st.readPaused = false
                return schedule(&st)
            }
            if resume { loop.wake() }
        }
    }

    /// Queued behind every message delivered so far: lets the socket thread answer the client's Close.
    func releaseCloseAfterPendingMessages() {
        queue.async { [self] in
            let wake = outgoing.withLock { st -> Bool in
                st.closeReleased = true
                return schedule(&st)
            }
            if wake { loop.wake() }
        }
    }

    /// The last call: the handler is dropped after it (it usually holds this socket: no cycle is left).
    func deliverClose(code: UInt16) {
        queue.async { [self] in
            let handler = handlerBox.withLock { h in defer { h = nil }; return h }
            handler?.webSocketDidClose(self, code: code)
        }
    }
}
