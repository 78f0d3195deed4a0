import Dispatch
import Foundation
import HTTPTypes
import Logging
import Metrics
import MockShiftHTTP
import Synchronization

/// The VectorShift API on top of the transport: authenticates, routes, calls a handler and renders its answer
/// or error. One instance serves every request; it holds the store and the run engine.
public final class MockShiftApp: HTTPResponder {
    public let store: Store
    public let engine: RunEngine
    let router: Router
    let apiKeys: Set<String>
    let logger: Logger
    /// Body limit in bytes, for the 413 message.
    let maxBodyBytes: Int
    /// `serve --cancel-on-disconnect`: a streaming client that goes away terminates its run (SPEC §5).
    let cancelOnDisconnect: Bool
    /// `serve --admin-key`: the key allowed to reset every namespace at once.
    let adminKey: String?
    /// The `/_mock/requests` journal.
    let journal: Journal
    /// The clock of the streams' `: keep-alive` comments: real time always (they are for proxies and clients that
    /// time out), so under `--clock manual` it is a scheduler of its own, not the simulation's.
    let keepAliveScheduler: Scheduler
    /// Encoded status answers of final runs (status polls of finished runs are the most frequent request).
    let finalStatusBodies = FinalStatusBodies()
    /// Request counters and the duration timer, made once (a lookup per request costs a lock and a hash).
    private let requestMetrics = RequestMetrics()
    /// Open streams per namespace (`open_streams` of `/_mock/stats`).
    let streams = StreamTally()
    /// Injected faults (`/_mock/faults`).
    let faults: Faults
    /// Scripted LLM answers (`/_mock/llm`, fixtures).
    let llmScripts = LLMScripts()
    /// Chatbot turns in progress, one per conversation (SPEC §9).
    let chatTurns = ChatTurns()
    /// WebSocket sessions' attached sockets and live turns (SPEC §10).
    let sessionHub = SessionHub()
    /// Gives each namespace the fixtures (`serve --fixtures`) the first time its key is seen, and again on reset.
    let fixtureSeeder = FixtureSeeder()
    /// Calls of background runs' `webhook_url` when they end (issue 11 item 6); the executable calls its
    /// `shutdown(waitingAtMost:)` after the engine's.
    public let webhooks: Webhooks
    /// `serve --record`: forwards `/v1` requests to the upstream and records what goes by (issue 15); nil otherwise.
    public let recorder: RecordingProxy?
    /// False until fixtures are loaded (`/_mock/ready`, SPEC §7).
    private let isReady = Atomic<Bool>(false)

    /// Marks the daemon ready: `GET /_mock/ready` answers 200 from now on.
    public func markReady() { isReady.store(true, ordering: .releasing) }
    var ready: Bool { isReady.load(ordering: .acquiring) }

    /// The Prometheus text of every metric (`GET /metrics`), set by the executable that owns the registry.
    private let metricsText = Mutex<(@Sendable () -> [UInt8])?>(nil)

    /// Lets `GET /metrics` print the metrics registry (SPEC §7).
    public func exposeMetrics(_ text: @escaping @Sendable () -> [UInt8]) { metricsText.withLock { $0 = text } }
    func currentMetricsText() -> [UInt8] { metricsText.withLock { $0 }?() ?? [] }

    /// Figures from the transport for `/_mock/stats` (open connections, open streams), set once it runs.
    private let transportStats = Mutex<(@Sendable () -> JSONObject)?>(nil)

    /// Lets `/_mock/stats` report the transport's figures; the app itself never sees the transport.
    public func reportTransportStats(_ provider: @escaping @Sendable () -> JSONObject) {
        transportStats.withLock { $0 = provider }
    }

    func currentTransportStats() -> JSONObject { transportStats.withLock { $0 }?() ?? [:] }

    /// - Parameter apiKeys: accepted keys; empty = any key (SPEC §1 `--api-key`).
    public init(store: Store, engine: RunEngine, apiKeys: Set<String>, maxBodyBytes: Int,
                cancelOnDisconnect: Bool = false, seed: UInt64 = 0, adminKey: String? = nil,
                journalSize: Int = 1000, recorder: RecordingProxy? = nil, logger: Logger) {
        self.recorder = recorder
        self.journal = Journal(capacity: journalSize)
        self.adminKey = adminKey
        self.faults = Faults(seed: seed)
        self.cancelOnDisconnect = cancelOnDisconnect
        self.store = store
        self.engine = engine
        self.router = Router.vectorShiftRoutes()
        let scheduler = engine.scheduler
        self.webhooks = Webhooks(store: store, clock: { scheduler.now }, logger: logger)
        self.keepAliveScheduler = engine.scheduler.clock == .real ? engine.scheduler : Scheduler(clock: .real)
        // The admin key is always accepted when keys are restricted.
        self.apiKeys = apiKeys.isEmpty ? apiKeys : apiKeys.union(adminKey.map { [$0] } ?? [])
        self.maxBodyBytes = maxBodyBytes
        self.logger = logger
        recorder?.fidelity.attach { [weak self] request, namespace, answered in
            self?.answerInProcess(request, namespace: namespace, answered: answered)
        }
    }

    /// Answers `request` as this daemon would for `namespace`, with no client: no authentication, journal or fault
    /// rules; the answer (a stream's too, read with ``StreamBody/capture(_:)``) goes to `answered`. Record mode's
    /// shadow (``FidelityShadow``, issue 15 item 4).
    func answerInProcess(_ request: Request, namespace: String, answered: @escaping @Sendable (Response) -> Void) {
        let writer = ReplyWriter(writer: nil, onSend: answered)
        do {
            try fixtureSeeder.ensureSeeded(namespace, app: self)
            try dispatch(request, namespace: namespace, writer: writer, effect: nil)
        } catch {
            answer(error, request, writer)
        }
    }

    public func respond(to request: Request, writer transportWriter: ResponseWriter) {
        let path = request.path
        var writer = ReplyWriter(writer: transportWriter, onSend: nil)
        do {
            if request.bodyTooLarge {
                throw APIError(.payloadTooLarge, "Request body exceeds the limit of \(maxBodyBytes) bytes")
            }
            // Read once, by a plain scan: the subscript builds an index of every header name first (measured).
            let authorization = request.head.headerFields.first(where: { $0.name == .authorization })?.value
            let namespace = Self.isPublic(request) ? "default" : try authenticate(authorization)
            // A key seen for the first time starts from the fixtures, before its first request is served (not
            // for health and readiness checks, which must answer while the database cannot be written).
            if path != "/_mock/health" && path != "/_mock/ready" { try fixtureSeeder.ensureSeeded(namespace, app: self) }
            if path.hasPrefix("/v1/") || path == "/ws/session" {
                // The session upgrade at the SDK's other URL (VECTORSHIFT_WS_URL, no /v1) is journalled too.
                writer = journaling(request, namespace: namespace, authorization: authorization, transportWriter)
            }
            if let recorder, RecordingProxy.forwards(path) {
                return recorder.forward(request, writer: writer, namespace: namespace)  // record mode: the upstream answers
            }
            if path.hasPrefix("/v1/") {
                if let effect = faults.match(namespace: namespace, method: request.head.method.rawValue, path: path) {
                    inject(effect, request, namespace: namespace, writer: writer)
                    return
                }
            }
            try dispatch(request, namespace: namespace, writer: writer, effect: nil)
        } catch {
            answer(error, request, writer)
        }
    }

    /// Routes and runs the handler.
    private func dispatch(_ request: Request, namespace: String, writer: ReplyWriter, effect: Faults.Effect?) throws {
        let (handler, parameters) = try router.match(request.head.method, request.path)
        let context = HandlerContext(app: self, request: request, namespace: namespace, parameters: parameters,
                                     writer: writer, injectedLLMFailures: effect?.llmFailures ?? [],
                                     injectedStreamCut: effect?.cutStreamAfter)
        switch try handler(context) {
        case let .json(status, body): writer.send(Self.json(status, body))
        case let .empty(status, headers): writer.send(Response(status: status, headerFields: headers))
        case .later: break
        }
    }

    private func answer(_ error: any Error, _ request: Request, _ writer: ReplyWriter) {
        if let error = error as? APIError {
            logger.debug("\(request.head.method.rawValue) \(request.path) -> \(error.kind): \(error.message)")
            writer.send(Self.render(error))
        } else if let unavailable = Self.storageUnavailable(error) {
            // The database is locked by another process or the disk is full: nothing was stored, try again.
            logger.warning("\(request.head.method.rawValue) \(request.path) -> 503: \(unavailable.message)")
            writer.send(Self.render(unavailable))
        } else {
            logger.error("\(request.head.method.rawValue) \(request.path) failed: \(error)")
            writer.send(Self.render(APIError(.internalError, "internal error: \(error)")))
        }
    }

    /// A transient storage failure (``StoreUnavailable``, or a busy, locked, full or I/O SQLite error) as the
    /// 503 it answers; nil for any other error.
    static func storageUnavailable(_ error: any Error) -> APIError? {
        if let error = error as? StoreUnavailable {
            return APIError(.unavailable, "storage unavailable: \(error.reason); nothing was stored, try again")
        }
        if let error = error as? SQLiteError, error.isTransient {
            return APIError(.unavailable, "storage unavailable: \(error.message); nothing was stored, try again")
        }
        return nil
    }

    /// Applies an injected fault: after its delay (real time, whatever the clock), drop the connection, answer
    /// with the rule's status and body, or serve the request normally (with LLM failures for the runs it starts,
    /// and a cut for the stream it opens).
    private func inject(_ effect: Faults.Effect, _ request: Request, namespace: String, writer: ReplyWriter) {
        let proceed: @Sendable () -> Void = { [self] in
            if effect.drop { return writer.send(.dropConnection) }
            if let response = effect.response {
                return writer.send(Self.json(HTTPResponse.Status(code: response.status), response.body))
            }
            do { try dispatch(request, namespace: namespace, writer: writer, effect: effect) } catch {
                answer(error, request, writer)
            }
        }
        if effect.delayMs > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .microseconds(Int(effect.delayMs * 1000)), execute: proceed)
        } else {
            proceed()
        }
    }

    /// A writer that journals the request once it is answered (SPEC §7 `requests`) and counts it in the
    /// metrics (`mockshift_http_requests_total{method,status}`, `mockshift_http_request_duration_seconds`).
    private func journaling(_ request: Request, namespace: String, authorization: String?,
                            _ writer: ResponseWriter) -> ReplyWriter {
        let started = DispatchTime.now().uptimeNanoseconds
        let atMicros = wallClockMicros()
        return ReplyWriter(writer: writer) { [self] response in
            let elapsed = DispatchTime.now().uptimeNanoseconds - started
            var status: Int? = Int(response.head.status.code)
            if case .dropConnection = response.body { status = nil }
            let method = request.head.method.rawValue
            requestMetrics.count(method: method, status: status, durationNanoseconds: elapsed)
            var form: [(String, String)]?
            if let fields = request.formFields {
                form = fields.map { ($0.name, $0.filename.map { "<file \($0)>" } ?? String($0.text.prefix(4096))) }
            }
            journal.record(Journal.Entry(
                namespace: namespace, atMicros: atMicros, method: method, path: request.path, query: request.query,
                body: form == nil ? request.body.prefix(4096) : [], form: form, status: status,
                durationNanoseconds: elapsed, authorization: Journal.mask(authorization)))
        }
    }

    /// Requests answered without authentication: `GET` (and `HEAD`) of `/openapi.json` (see `MockHandlers.openAPI`),
    /// of the dashboard's files (`/`, `/_mock/ui`, `/_mock/ui/{file}`, see `DashboardHandlers`) and of
    /// `/favicon.ico`, which hold no data; and every `OPTIONS`, which only lists the methods of a path (a browser's
    /// preflight carries no key).
    static func isPublic(_ request: Request) -> Bool {
        let method = request.head.method
        if method == .options { return true }
        guard method == .get || method == .head else { return false }
        let path = request.path
        return path == "/openapi.json" || path == "/favicon.ico" || DashboardHandlers.isDashboardPath(path)
    }

    /// The caller's namespace: its API key, or `default` with no key or `Bearer None` (SPEC §7). With
    /// configured keys, anything else is 401 in the auth format (API.md §2).
    func authenticate(_ header: String?) throws -> String {
        let key: String?
        if let header {
            // "Bearer KEY", scheme case-insensitive; read on UTF-8 without Foundation (this runs on every request).
            let utf8 = header.utf8
            guard let space = utf8.firstIndex(of: UInt8(ascii: " ")),
                  utf8[..<space].elementsEqual("bearer".utf8, by: { $0 | 0x20 == $1 }) else {
                if apiKeys.isEmpty { return "default" }
                throw APIError(.unauthorized, "Invalid authorization header format")
            }
            let rest = utf8[utf8.index(after: space)...]
            let isBlank = { (b: UInt8) in b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
            let start = rest.firstIndex(where: { !isBlank($0) }) ?? rest.endIndex
            let end = rest.lastIndex(where: { !isBlank($0) }).map { utf8.index(after: $0) } ?? start
            let value = start < end ? String(Substring(utf8[start..<end])) : ""
            key = value == "None" || value.isEmpty ? nil : value
        } else {
            key = nil
        }
        if apiKeys.isEmpty { return key ?? "default" }
        guard header != nil else { throw APIError(.unauthorized, "Missing authorization header") }
        guard let key, apiKeys.contains(key) else { throw APIError(.unauthorized, "Invalid API key: verification failed") }
        return key
    }

    // MARK: Rendering

    /// A JSON response.
    public static func json(_ status: HTTPResponse.Status, _ body: JSON) -> Response {
        Response(status: status, headerFields: [.contentType: "application/json"], body: body.encoded())
    }

    /// The HTTP status for an error kind (SPEC §2).
    public static func status(for kind: APIError.Kind) -> HTTPResponse.Status {
        switch kind {
        case .badRequest: .badRequest
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .upgradeRequired: HTTPResponse.Status(code: 426, reasonPhrase: "Upgrade Required")
        case .conflict: .conflict
        case .payloadTooLarge: .contentTooLarge
        case .unprocessable: .unprocessableContent
        case .notImplemented: .notImplemented
        case .internalError: .internalServerError
        case .unavailable: .serviceUnavailable
        case .badGateway: .badGateway
        }
    }

    /// The one place errors become bodies: `{"error":...}` for authentication, `{"status":"failed","error":...}`
    /// (plus `run_id` when a run is concerned) for everything else (API.md §2).
    public static func render(_ error: APIError) -> Response {
        var body: JSONObject
        if error.kind == .unauthorized || error.plainBody {
            body = ["error": .string(error.message)]
        } else {
            body = ["status": "failed", "error": .string(error.message)]
            if let runID = error.runID { body["run_id"] = .string(runID) }
            for (key, value) in error.details { body[key] = value }
        }
        var response = json(status(for: error.kind), .object(body))
        if !error.allowedMethods.isEmpty {
            response.head.headerFields[.allow] = error.allowedMethods.joined(separator: ", ")
        }
        if error.kind == .unavailable { response.head.headerFields[.retryAfter] = "1" }
        if error.kind == .upgradeRequired { response.head.headerFields[.secWebSocketVersion] = WebSocketHandshake.version }
        return response
    }
}

/// The request metrics of `/v1`, with one counter per (method, status) made on first use.
final class RequestMetrics: Sendable {
    private let counters = Mutex<[String: Counter]>([:])
    private let duration = Metrics.Timer(label: "mockshift_http_request_duration_seconds")

    /// Counts one answered request; `status` nil = dropped by a fault.
    func count(method: String, status: Int?, durationNanoseconds: UInt64 = 0) {
        let statusText = status.map(String.init) ?? "dropped"
        let key = method + " " + statusText
        let counter = counters.withLock { map in
            if let c = map[key] { return c }
            let c = Counter(label: "mockshift_http_requests_total", dimensions: [("method", method), ("status", statusText)])
            map[key] = c
            return c
        }
        counter.increment()
        if durationNanoseconds > 0 { duration.recordNanoseconds(Int64(durationNanoseconds)) }
    }
}

/// The encoded `GET …/run/status/{id}` answers of final runs, by run id: a final run never changes (SPEC §3), so
/// polling it costs a lookup instead of rendering and encoding it again. Bounded: cleared when 4,096 are held.
final class FinalStatusBodies: Sendable {
    private let bodies = Mutex<[String: [UInt8]]>([:])

    func body(for runID: String, render: () -> [UInt8]) -> [UInt8] {
        if let cached = bodies.withLock({ $0[runID] }) { return cached }
        let body = render()
        bodies.withLock { cache in
            if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
            cache[runID] = body
        }
        return body
    }
}
