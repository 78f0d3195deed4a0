import CMicroHTTPD
import Foundation
import HTTPTypes
import Logging
import Synchronization

/// Settings of the libmicrohttpd daemon. Defaults follow TECH-NOTES R2 (epoll, pool of 2, explicit limits).
public struct HTTPServerConfiguration: Sendable {
    /// Host name or address to bind (`127.0.0.1`, `::1`, `0.0.0.0`, `localhost`).
    public var host: String = "127.0.0.1"
    /// TCP port; `0` lets the kernel choose (read it back from ``HTTPServer/port``).
    public var port: UInt16 = 8000
    /// libmicrohttpd worker threads (2 measured best on 2 cores).
    public var threadPoolSize: UInt32 = 2
    /// Most simultaneous connections; keep below the process's open-file limit. libmicrohttpd splits it evenly
    /// between its worker threads; a worker at its share stops accepting, so the total holds exactly. Further
    /// clients wait in the listen queue (4,096) until a connection closes.
    public var connectionLimit: UInt32 = 15_000
    /// A connection that sends nothing for this many seconds is closed: idle keep-alive connections and slow
    /// clients stuck in a request head or body (suspended ones, parked by us, never time out).
    public var connectionTimeoutSeconds: UInt32 = 120
    /// Per-connection memory pool in bytes: holds the request line, headers and query arguments as parsed, and
    /// the answer's head. A larger request head is answered 414/431 by libmicrohttpd itself; one that nearly fills
    /// the pool, or has very many query arguments, makes it drop or stall the connection (0.9.75). 32 KiB, its
    /// default: 16 KiB measured a few percent faster (TECH-NOTES P4) but dropped 10 KB queries of ~100 arguments
    /// that the fuzz test generates.
    public var connectionMemoryLimit: Int = 32 * 1024
    /// Largest request body kept, in bytes; a larger one reaches the responder with `bodyTooLarge`.
    public var maxBodyBytes: Int = 32 * 1024 * 1024
    /// Let libmicrohttpd print its own diagnostics to standard error.
    public var errorLog = false
    /// Answer given to requests still parked when the server stops.
    public var shutdownResponse = Response(status: .serviceUnavailable)
    /// Limits of upgraded (WebSocket) connections: message size, queued bytes, closing handshake time.
    public var webSocketLimits = WebSocketLimits()

    public init() {}
}

/// Errors from starting the daemon.
public enum HTTPServerError: Error, CustomStringConvertible {
    /// libmicrohttpd refused to start (address in use, host does not resolve, ...).
    case cannotStart(host: String, port: UInt16)

    public var description: String {
        switch self {
        case let .cannotStart(host, port): "cannot listen on \(host):\(port) (address in use or host unknown)"
        }
    }
}

/// The HTTP transport: a libmicrohttpd daemon (internal polling thread, epoll, thread pool, suspend/resume)
/// that turns each request into a ``Request`` value, hands it to one ``HTTPResponder`` and sends back the
/// ``Response`` given to its ``ResponseWriter``. It knows nothing of what the requests mean.
///
/// Requests follow libmicrohttpd's access-handler protocol: the first call carries the head only (answering
/// there would cost keep-alive, TECH-NOTES P2), later calls carry body pieces, the last call has none. A
/// responder that does not answer at once parks the connection (`MHD_suspend_connection`) until
/// ``ResponseWriter/send(_:)`` resumes it, so waiting requests hold no thread.
///
/// A response made with ``Response/webSocketUpgrade(accept:handler:)`` turns its connection into a WebSocket
/// (libmicrohttpd's upgrade support, `MHD_ALLOW_UPGRADE`): after the 101, the socket is served by one thread of
/// ours (`WebSocketLoop`) and its handler gets a ``WebSocket``.
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: `daemon` is written only by start() and stop(), before and after the daemon's threads run.
    let configuration: HTTPServerConfiguration
    let responder: any HTTPResponder
    let logger: Logger
    private var daemon: OpaquePointer?
    private var selfReference: Unmanaged<HTTPServer>?
    /// Requests between their first handler call and libmicrohttpd's "completed" notification.
    let live = Mutex<[ObjectIdentifier: RequestContext]>([:])
    /// Notices clients that hang up on a parked stream.
    let hangups = HangupWatcher()
    /// The upgraded sockets' thread, started with the first upgrade.
    private let webSocketLoop = Mutex<WebSocketLoop?>(nil)

    /// The bound port (the kernel's choice when configured with 0), valid after ``start()``.
    public private(set) var port: UInt16 = 0

    public init(configuration: HTTPServerConfiguration, responder: any HTTPResponder, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
    }

    /// Starts listening. Throws ``HTTPServerError/cannotStart(host:port:)``.
    public func start() throws {
        let flags = MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_EPOLL.rawValue
            | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_ALLOW_UPGRADE.rawValue
            | (configuration.errorLog ? MHD_USE_ERROR_LOG.rawValue : 0)
        let me = Unmanaged.passRetained(self)  // released in stop(), after MHD_stop_daemon
        let d = cmhd_start(UInt32(flags), configuration.host, configuration.port,
                           accessHandler, me.toOpaque(), requestCompleted, me.toOpaque(),
                           configuration.threadPoolSize, configuration.connectionLimit,
                           configuration.connectionTimeoutSeconds, configuration.connectionMemoryLimit,
                           unescapeKeepingNUL)
        guard let d else {
            me.release()
            throw HTTPServerError.cannotStart(host: configuration.host, port: configuration.port)
        }
        daemon = d
        selfReference = me
        port = cmhd_bound_port(d)
    }

    /// Stops accepting new connections (`MHD_quiesce_daemon`); open ones keep being served until ``stop(drainSeconds:)``.
    /// Open WebSockets start their closing handshake now (Close 1001 "server shutting down", SPEC §1 and §10), so
    /// that their clients have answered by the time ``stop(drainSeconds:)`` runs.
    public func stopAccepting() {
        guard let d = daemon else { return }
        let fd = MHD_quiesce_daemon(d)
        if fd >= 0 { close(fd) }  // quiesce hands the listening socket back to us
        webSocketLoop.withLock { $0 }?.beginClosingAll(code: 1001, reason: "server shutting down",
                                                       graceSeconds: configuration.webSocketLimits.closeGraceSeconds)
    }

    /// Stops the daemon: parked requests get the configured shutdown response first (libmicrohttpd must not be
    /// stopped with suspended connections, TECH-NOTES P7), then waits up to `drainSeconds` for them to go out.
    public func stop(drainSeconds: Double = 1.0) {
        guard let d = daemon else { return }
        // WebSockets first: each gets Close 1001 (unless stopAccepting() sent it) and at most `drainSeconds` to
        // answer; libmicrohttpd must get every upgraded socket back before it stops.
        webSocketLoop.withLock { $0 }?.shutdown(code: 1001, reason: "server shutting down", waitingAtMost: drainSeconds)
        let parked = live.withLock { Array($0.values) }
        for context in parked { ResponseWriter(context: context).send(configuration.shutdownResponse) }
        let deadline = Date().addingTimeInterval(drainSeconds)
        while Date() < deadline {  // until every request in flight has been answered and sent
            if live.withLock({ $0.isEmpty }) && hangups.count == 0 { break }
            usleep(5_000)
        }
        hangups.abortAll()  // streams nobody finished: end them so no connection stays suspended (P7)
        let abortDeadline = Date().addingTimeInterval(0.2)
        while hangups.count > 0 && Date() < abortDeadline { usleep(5_000) }
        MHD_stop_daemon(d)
        daemon = nil
        selfReference?.release()  // balances passRetained in start()
        selfReference = nil
    }

    /// Requests between their first handler call and libmicrohttpd's completion notice.
    public var requestsInFlight: Int { live.withLock { $0.count } }

    /// Number of requests parked (suspended) while they wait for their answer, e.g. synchronous runs.
    public var parkedRequests: Int {
        live.withLock { $0.values.reduce(0) { $0 + ($1.state.withLock { $0.suspended } ? 1 : 0) } }
    }

    /// Number of streaming responses whose client is still connected.
    public var openStreams: Int { hangups.count }

    /// Number of open WebSockets (upgraded connections not yet handed back to libmicrohttpd).
    public var openWebSockets: Int { webSocketLoop.withLock { $0 }?.openCount.load(ordering: .relaxed) ?? 0 }

    /// Of ``openWebSockets``, those whose closing handshake has begun (a Close sent or received).
    public var closingWebSockets: Int { webSocketLoop.withLock { $0 }?.closingCount.load(ordering: .relaxed) ?? 0 }

    /// Number of open connections, for statistics.
    public var currentConnections: Int {
        guard let daemon else { return 0 }
        return Int(cmhd_current_connections(daemon))
    }

    // MARK: - Per-request work (called on libmicrohttpd worker threads)

    func handle(connection: OpaquePointer, url: String, method: String, upload: UnsafePointer<CChar>?,
                uploadSize: UnsafeMutablePointer<Int>, contextSlot: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> MHD_Result {
        guard let raw = contextSlot.pointee else {
            // First call: head only.
            let context = RequestContext(connection: connection)
            contextSlot.pointee = Unmanaged.passRetained(context).toOpaque()  // released in requestCompleted
            live.withLock { $0[ObjectIdentifier(context)] = context }
            if let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length"),
               let n = Int(String(cString: length)), n > configuration.maxBodyBytes {
                // Answering now means libmicrohttpd never reads the body and closes afterwards: what we want.
                context.tooLarge = true
                return dispatch(context, url: url, method: method)
            }
            return .YES
        }
        let context = Unmanaged<RequestContext>.fromOpaque(raw).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            // A body piece: keep it unless over the limit; mark it consumed; never answer here.
            if !context.tooLarge, let upload {
                if context.body.count + uploadSize.pointee > configuration.maxBodyBytes {
                    context.tooLarge = true
                    context.body = []
                } else {
                    upload.withMemoryRebound(to: UInt8.self, capacity: uploadSize.pointee) {
                        context.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: uploadSize.pointee))
                    }
                }
            }
            uploadSize.pointee = 0
            return .YES
        }
        if !context.dispatched { return dispatch(context, url: url, method: method) }
        return queueOrPark(context)  // called again after a resume
    }

    private func dispatch(_ context: RequestContext, url: String, method: String) -> MHD_Result {
        context.dispatched = true
        let request = makeRequest(context, url: url, method: method)
        context.body = []
        responder.respond(to: request, writer: ResponseWriter(context: context))
        return queueOrPark(context)
    }

    private func queueOrPark(_ context: RequestContext) -> MHD_Result {
        let ready: Response? = context.state.withLock { st in
            if let r = st.response { return r }
            st.suspended = true
            MHD_suspend_connection(context.connection)  // under the lock: send() cannot resume before this
            return nil
        }
        guard let ready else { return .YES }
        return queue(ready, for: context)
    }

    private func queue(_ response: Response, for context: RequestContext) -> MHD_Result {
        let connection = context.connection
        let created: OpaquePointer?
        switch response.body {
        case .dropConnection:
            return .NO  // libmicrohttpd closes the connection without a response
        case let .bytes(body):
            created = body.withUnsafeBytes { bytes in
                MHD_create_response_from_buffer(bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress),
                                                .RESPMEM_MUST_COPY)
            }
        case let .stream(stream):
            let fd = cmhd_connection_fd(connection)
            var unwatch: (@Sendable () -> Void)?
            if fd >= 0 {
                let watcher = hangups
                let token = watcher.watch(fd: fd, stream: stream)
                unwatch = { watcher.unwatch(token) }
            }
            stream.attach(connection, fd: fd, unwatch: unwatch)
            let retained = Unmanaged.passRetained(stream)  // released in streamReleased (the response's free callback)
            created = MHD_create_response_from_callback(CMHD_SIZE_UNKNOWN, 16 * 1024, streamReader,
                                                        retained.toOpaque(), streamReleased)
            if created == nil { retained.release() }
        case let .webSocket(upgrade):
            // The callback's closure is this server (alive while the daemon runs); the handler waits in the
            // request's context, which libmicrohttpd hands back to the callback (its `con_cls`) and keeps until
            // the upgraded socket is closed. A client gone before the 101 went out: no callback, the context
            // (and the handler with it) is released as for any request.
            context.upgrade = upgrade
            created = MHD_create_response_for_upgrade(webSocketUpgraded, Unmanaged.passUnretained(self).toOpaque())
        }
        guard let r = created else { return .NO }
        for field in response.head.headerFields {
            _ = MHD_add_response_header(r, field.name.rawName, field.value)
        }
        let result = MHD_queue_response(connection, UInt32(response.head.status.code), r)
        MHD_destroy_response(r)
        return result
    }

    private func makeRequest(_ context: RequestContext, url: String, method: String) -> Request {
        let connection = context.connection
        let collector = PairCollector()
        let box = Unmanaged.passRetained(collector)  // released right after the two synchronous walks below
        _ = MHD_get_connection_values(connection, .HEADER_KIND, pairIterator, box.toOpaque())
        let headers = collector.pairs
        collector.pairs = []
        _ = MHD_get_connection_values(connection, .GET_ARGUMENT_KIND, pairIterator, box.toOpaque())
        let query = collector.pairs
        box.release()

        var fields = HTTPFields()
        for (name, value) in headers {
            if let n = HTTPField.Name(name) { fields.append(HTTPField(name: n, value: value)) }
        }
        let httpMethod = HTTPRequest.Method(method) ?? .get
        let head = HTTPRequest(method: httpMethod, scheme: nil, authority: fields[HTTPField.Name("Host")!], path: url, headerFields: fields)
        var request = Request(head: head, query: query, body: context.body, bodyTooLarge: context.tooLarge)
        if !context.tooLarge, let type = fields[.contentType]?.lowercased(),
           type.hasPrefix("application/x-www-form-urlencoded") || type.hasPrefix("multipart/form-data") {
            request.formFields = parseForm(context)
        }
        return request
    }

    /// Parses a buffered form body with libmicrohttpd's post processor (both urlencoded and multipart).
    private func parseForm(_ context: RequestContext) -> [FormField] {
        let collector = FormCollector()
        let box = Unmanaged.passRetained(collector)  // released below, after the processor is destroyed
        defer { box.release() }
        guard let processor = MHD_create_post_processor(context.connection, 64 * 1024, formIterator, box.toOpaque()) else {
            return []
        }
        context.body.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress {
                _ = MHD_post_process(processor, base.assumingMemoryBound(to: CChar.self), bytes.count)
            }
        }
        _ = MHD_destroy_post_processor(processor)
        return collector.fields
    }

    /// libmicrohttpd sent the 101 and hands the socket over (on its thread; must not block).
    func upgraded(context: RequestContext, extraIn: UnsafeBufferPointer<UInt8>, fd: Int32, handle: OpaquePointer) {
        // No longer a request in flight: from here on it counts as an open WebSocket. Its completion notice comes
        // when the socket is handed back (cmhd_upgrade_close), and releases the context then.
        live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(context)) }
        guard let upgrade = context.upgrade else {
            _ = cmhd_upgrade_close(handle)
            return
        }
        context.upgrade = nil
        let loop = webSocketLoop.withLock { loop in
            if let loop { return loop }
            let started = WebSocketLoop(limits: configuration.webSocketLimits, logger: logger)
            loop = started
            return started
        }
        loop.add(fd: fd, upgradeHandle: handle, extraIn: Array(extraIn), handler: upgrade.handler)
    }

    func completed(contextSlot: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) {
        guard let contextSlot, let raw = contextSlot.pointee else { return }
        let unmanaged = Unmanaged<RequestContext>.fromOpaque(raw)
        let context = unmanaged.takeUnretainedValue()
        context.state.withLock { $0.closed = true }
        live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(context)) }
        unmanaged.release()  // balances passRetained on the first handler call
        contextSlot.pointee = nil
    }
}

/// State of one request inside the transport.
final class RequestContext: @unchecked Sendable {
    // @unchecked: `body`, `tooLarge` and `dispatched` are touched only by the libmicrohttpd thread that owns the
    // connection; everything shared with other threads lives in `state`, under its mutex.
    struct Shared {
        var response: Response?
        var suspended = false
        var closed = false
    }

    let connection: OpaquePointer
    var body: [UInt8] = []
    var tooLarge = false
    var dispatched = false
    /// The WebSocket upgrade queued for this request, until libmicrohttpd hands the socket over.
    var upgrade: WebSocketUpgrade?
    let state = Mutex(Shared())

    init(connection: OpaquePointer) { self.connection = connection }

}

/// Hands a request's answer back to the transport, from any thread, once.
public struct ResponseWriter: Sendable {
    let context: RequestContext

    /// Sends `response`. Only the first call counts; a call after the client went away is ignored.
    public func send(_ response: Response) {
        context.state.withLock { st in
            if st.closed || st.response != nil { return }
            st.response = response
            if st.suspended {
                st.suspended = false
                MHD_resume_connection(context.connection)  // never twice: guarded by `suspended` under the lock
            }
        }
    }
}

final class PairCollector: @unchecked Sendable {  // used synchronously by one thread only
    var pairs: [(String, String)] = []
}

final class FormCollector: @unchecked Sendable {  // used synchronously by one thread only
    var fields: [FormField] = []
}

let pairIterator: MHD_KeyValueIterator = { cls, _, key, value in
    guard let cls, let key else { return .YES }
    let collector = Unmanaged<PairCollector>.fromOpaque(cls).takeUnretainedValue()
    collector.pairs.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
    return .YES
}

let formIterator: MHD_PostDataIterator = { cls, _, key, filename, contentType, _, data, offset, size in
    guard let cls, let key else { return .YES }
    let collector = Unmanaged<FormCollector>.fromOpaque(cls).takeUnretainedValue()
    let name = String(cString: key)
    var bytes: [UInt8] = []
    if let data, size > 0 {
        data.withMemoryRebound(to: UInt8.self, capacity: size) { bytes = Array(UnsafeBufferPointer(start: $0, count: size)) }
    }
    if offset > 0, let last = collector.fields.indices.last, collector.fields[last].name == name {
        collector.fields[last].value.append(contentsOf: bytes)
    } else {
        collector.fields.append(FormField(name: name, filename: filename.map { String(cString: $0) },
                                          contentType: contentType.map { String(cString: $0) }, value: bytes))
    }
    return .YES
}

/// libmicrohttpd's percent-decoding of the path and of query names and values, replacing its default
/// (`MHD_http_unescape`): the same decoding, except that `%00` is left as the three characters. Decoded, a NUL
/// ends the C string libmicrohttpd hands over, so the request silently became another one: `DELETE
/// /v1/pipeline/ID%00/x` deleted pipeline ID and `POST /v1/pipeline/%00/run` created a pipeline (found by
/// `HostileInputTests`). Left encoded, it is just an unknown id (404). Decodes in place; returns the new length.
let unescapeKeepingNUL: cmhd_unescape_callback = { _, _, text in
    guard let text else { return 0 }
    func hex(_ c: CChar) -> UInt8? {
        switch UInt8(bitPattern: c) {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt8(bitPattern: c) - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt8(bitPattern: c) - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt8(bitPattern: c) - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var read = 0, write = 0
    while text[read] != 0 {
        // `hex` is nil for the terminating NUL, so text[read + 2] is never read past the end.
        if text[read] == CChar(UInt8(ascii: "%")), let high = hex(text[read + 1]), let low = hex(text[read + 2]),
           high | low != 0 {
            text[write] = CChar(bitPattern: high << 4 | low)
            read += 3
        } else {
            text[write] = text[read]
            read += 1
        }
        write += 1
    }
    text[write] = 0
    return write
}

let accessHandler: MHD_AccessHandlerCallback = { cls, connection, url, method, _, upload, uploadSize, contextSlot in
    guard let cls, let connection, let url, let method, let uploadSize, let contextSlot else { return .NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
    return server.handle(connection: connection, url: String(cString: url), method: String(cString: method),
                         upload: upload, uploadSize: uploadSize, contextSlot: contextSlot)
}

/// libmicrohttpd's upgrade callback: `cls` is the server (unretained, see `queue`), `requestSlot` the request's
/// context (retained on the first handler call, released in `requestCompleted`).
let webSocketUpgraded: MHD_UpgradeHandler = { cls, _, requestSlot, extraIn, extraInSize, fd, handle in
    guard let cls, let handle else { return }
    let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
    guard let requestSlot else {
        _ = cmhd_upgrade_close(handle)
        return
    }
    let context = Unmanaged<RequestContext>.fromOpaque(requestSlot).takeUnretainedValue()
    let bytes = extraIn.map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self) }
    server.upgraded(context: context, extraIn: UnsafeBufferPointer(start: bytes, count: bytes == nil ? 0 : extraInSize),
                    fd: fd, handle: handle)
}

let requestCompleted: MHD_RequestCompletedCallback = { cls, _, contextSlot, _ in
    guard let cls else { return }
    Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue().completed(contextSlot: contextSlot)
}
