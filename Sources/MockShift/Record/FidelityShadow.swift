import Dispatch
import Foundation
import HTTPTypes
import Logging
import MockShiftHTTP
import Synchronization

/// Record mode's shadow (issue 15 item 4): after the proxy relayed an exchange to its client, the same request is
/// answered by this daemon itself, in a namespace of its own per caller (``namespace(for:)``), and the two answers
/// are compared by shape into the ``FidelityReport`` written into the record dir.
///
/// - Order: exchanges are replayed to the shadow one at a time, in the order their real answers ended, each once
///   the previous one's shadow answer came (for a streamed run, once its first event came), so an object created
///   through the proxy exists in the shadow before a later request names it.
/// - Ids: what the upstream minted and what the shadow minted for the same request are paired (``ShadowIDMap``),
///   and later requests go to the shadow with the shadow's ids in their paths, queries and bodies; a run's status
///   on the real side is compared with the same run's status on the mock side.
/// - Runs: a status poll the real service answered with a final status is asked again of the shadow (every
///   100 ms, at most ``settleSeconds``) until the shadow's run is final too; runs in another state on each side
///   are not compared (their shapes differ by design). A streamed run is compared event type by event type
///   (the data of each type's events, in order) as endpoint `POST /v1/pipeline/:id/run (stream)`.
/// - Not compared, with a reason (never a difference): a request naming an id the shadow does not know, a
///   multipart or non-JSON body, an upstream that gave no whole answer, a shadow run that did not catch up.
/// - The client never waits for any of this: the proxy hands the exchange over once its answer is relayed, and
///   the shadow works on its own queue. The report files are rewritten at most every ``writeInterval`` while
///   exchanges come, and at ``close()``.
public final class FidelityShadow: Sendable {
    /// Answers a request as this daemon would for a namespace, without a client (``MockShiftApp``'s in-process
    /// dispatch); calls its last argument with the answer.
    public typealias Answerer = @Sendable (_ request: Request, _ namespace: String,
                                           _ answered: @escaping @Sendable (Response) -> Void) -> Void

    /// One exchange the proxy relayed: the client's request and the real answer.
    public struct Exchange: Sendable {
        public var namespace: String
        public var method: String
        /// With `/v1`, without query.
        public var path: String
        public var query: [(name: String, value: String)]
        public var contentType: String?
        public var body: [UInt8]
        /// The real status; 0 when the upstream gave none.
        public var realStatus: Int
        /// The real whole answer's body bytes (nil for a stream).
        public var realBytes: [UInt8]?
        /// The real whole answer's JSON body (nil: none, or a stream), parsed from ``realBytes`` by the shadow.
        public var realBody: JSON? = nil
        /// A streamed answer's events in order (type, data), at most ``maxEventsPerType`` of each type.
        public var realEvents: [(type: String, data: JSON)]?
        /// The upstream broke the answer off, or gave none.
        public var broken: Bool
    }

    public let report = FidelityReport()
    public let directory: String
    private let logger: Logger
    private let answerer = Mutex<Answerer?>(nil)
    private let queue = DispatchQueue(label: "mockshift.record.fidelity")

    private struct State {
        var maps: [String: ShadowIDMap] = [:]
        var waiting: [Exchange] = []
        var busy = false
        var closed = false
        var lastWrite = 0.0
        var writeScheduled = false
        var writeFailed = false
    }
    private let state = Mutex(State())

    /// Seconds between two rewrites of the report files while exchanges come (a crash loses at most these).
    static let writeInterval = 0.5
    /// How long a shadow run may take to reach the final status the real run showed.
    static let settleSeconds = 30.0
    /// How long one exchange may hold the queue before the next one goes (a shadow answer that never comes).
    static let exchangeTimeoutSeconds = 60.0
    /// Events kept per type and stream side.
    public static let maxEventsPerType = 64
    /// Exchanges waiting for the shadow at most; past it new ones are counted as not compared.
    static let maxWaiting = 10_000

    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    /// The namespace the shadow answers `namespace`'s requests in.
    public static func namespace(for namespace: String) -> String { "fidelity-shadow:" + namespace }

    /// Sets who answers the shadow's requests (the app, once it exists).
    public func attach(_ answerer: @escaping Answerer) { self.answerer.withLock { $0 = answerer } }

    /// Hands over a relayed exchange (from the proxy's thread; returns at once).
    public func submit(_ exchange: Exchange) {
        let start = state.withLock { st -> Bool in
            guard !st.closed else { return false }
            if st.waiting.count >= Self.maxWaiting {
                report.notCompared(endpoint: Self.endpoint(exchange), reason: "the mock was too far behind")
                return false
            }
            st.waiting.append(exchange)
            if st.busy { return false }
            st.busy = true
            return true
        }
        if start { queue.async { [self] in next() } }
    }

    /// Stops comparing (answers still to come are dropped: the daemon's runs are about to be interrupted) and writes
    /// the report. Waits up to `seconds` for the exchanges handed over so far.
    public func close(waitingAtMost seconds: Double = 0.5) {
        let deadline = DispatchTime.now() + seconds
        while DispatchTime.now() < deadline, state.withLock({ $0.busy || !$0.waiting.isEmpty }) {
            usleep(10_000)
        }
        state.withLock { $0.closed = true }
        queue.sync { writeNow() }
    }

    // MARK: The queue

    private func next() {
        let exchange = state.withLock { st -> Exchange? in
            if st.waiting.isEmpty || st.closed { st.busy = false; return nil }
            return st.waiting.removeFirst()
        }
        guard let exchange else { return }
        let once = Once()
        let done: @Sendable () -> Void = { [self] in
            if once.first() { queue.async { [self] in next() } }
        }
        queue.asyncAfter(deadline: .now() + Self.exchangeTimeoutSeconds, execute: done)
        compare(exchange, done: done)
    }

    static func endpoint(_ exchange: Exchange) -> String {
        let name = FidelityReport.endpoint(method: exchange.method, path: exchange.path)
        return exchange.realEvents != nil ? name + " (stream)" : name
    }

    private func skip(_ exchange: Exchange, _ reason: String, done: @Sendable () -> Void) {
        report.notCompared(endpoint: Self.endpoint(exchange), reason: reason)
        scheduleWrite()
        done()
    }

    /// Sends `exchange`'s request to the shadow and compares the answers (on the queue).
    private func compare(_ exchange: Exchange, done: @escaping @Sendable () -> Void) {
        var exchange = exchange
        if let bytes = exchange.realBytes, !bytes.isEmpty { exchange.realBody = try? JSON.parse(bytes) }
        if exchange.broken { return skip(exchange, "the upstream gave no whole answer", done: done) }
        guard let answerer = answerer.withLock({ $0 }) else { return skip(exchange, "no mock to ask", done: done) }
        let map = state.withLock { $0.maps[exchange.namespace] ?? ShadowIDMap() }
        let pattern = FidelityReport.routes.pattern(HTTPRequest.Method(exchange.method) ?? .get, exchange.path)
        guard let path = map.translate(path: exchange.path, pattern: pattern),
              let query = map.translate(query: exchange.query) else { return skip(exchange, ShadowIDMap.unknownID, done: done) }
        var body: [UInt8] = []
        if !exchange.body.isEmpty {
            if exchange.contentType?.lowercased().hasPrefix("multipart/") == true {
                return skip(exchange, "a multipart request is not sent to the mock", done: done)
            }
            guard let parsed = try? JSON.parse(exchange.body) else {
                return skip(exchange, "a request body that is not JSON is not sent to the mock", done: done)
            }
            guard let translated = map.translate(body: parsed) else { return skip(exchange, ShadowIDMap.unknownID, done: done) }
            body = translated.encoded()
        }
        var fields = HTTPFields()
        fields[.contentType] = exchange.contentType ?? (body.isEmpty ? nil : "application/json")
        let head = HTTPRequest(method: HTTPRequest.Method(exchange.method) ?? .get, scheme: nil, authority: nil,
                               path: path, headerFields: fields)
        let request = Request(head: head, query: query, body: body)
        let namespace = Self.namespace(for: exchange.namespace)
        let deadline = DispatchTime.now() + Self.settleSeconds
        ask(answerer, request, namespace, exchange: exchange, deadline: deadline, done: done)
    }

    private func ask(_ answerer: @escaping Answerer, _ request: Request, _ namespace: String, exchange: Exchange,
                     deadline: DispatchTime, done: @escaping @Sendable () -> Void) {
        let once = Once()
        answerer(request, namespace) { [self] response in
            guard once.first() else { return }
            switch response.body {
            case let .stream(stream):
                compareStream(exchange, status: Int(response.head.status.code), stream: stream, done: done)
            case let .bytes(bytes):
                queue.async { [self] in
                    let mockBody = bytes.isEmpty ? nil : try? JSON.parse(bytes)
                    let status = Int(response.head.status.code)
                    if retryStatusPoll(exchange, mockStatus: status, mockBody: mockBody) {
                        if DispatchTime.now() < deadline {
                            queue.asyncAfter(deadline: .now() + 0.1) { [self] in
                                ask(answerer, request, namespace, exchange: exchange, deadline: deadline, done: done)
                            }
                        } else {
                            skip(exchange, "the mock's run did not reach the real run's final status in time", done: done)
                        }
                        return
                    }
                    finish(exchange, mockStatus: status, mockBody: mockBody, done: done)
                }
            default:
                queue.async { [self] in skip(exchange, "the mock gave no HTTP answer", done: done) }
            }
        }
    }

    static let finalStatuses: Set<String> = ["completed", "failed", "terminated"]
    static let statusPoll = "GET /v1/pipeline/:id/run/status/:task"

    /// True when a run status poll must be asked again: the real run is final, the shadow's not yet.
    private func retryStatusPoll(_ exchange: Exchange, mockStatus: Int, mockBody: JSON?) -> Bool {
        guard Self.endpoint(exchange) == Self.statusPoll, exchange.realStatus == 200, mockStatus == 200,
              let real = exchange.realBody?["status"]?.stringValue, Self.finalStatuses.contains(real),
              let mock = mockBody?["status"]?.stringValue else { return false }
        return !Self.finalStatuses.contains(mock)
    }

    /// Compares a whole answer (on the queue).
    private func finish(_ exchange: Exchange, mockStatus: Int, mockBody: JSON?, done: @Sendable () -> Void) {
        let name = Self.endpoint(exchange)
        if name == Self.statusPoll, exchange.realStatus == 200, mockStatus == 200,
           exchange.realBody?["status"]?.stringValue != mockBody?["status"]?.stringValue {
            return skip(exchange, "the run was in another state on each side", done: done)
        }
        if (200..<300).contains(exchange.realStatus), mockStatus == 404, namesUnknownObject(exchange) {
            return skip(exchange, ShadowIDMap.unknownID, done: done)
        }
        learn(exchange.namespace, real: exchange.realBody, shadow: mockBody)
        let realBody: JSON? = exchange.realEvents.map(Self.eventsByType) ?? exchange.realBody
        record(name, exchange, realBody: realBody, mockStatus: mockStatus, mockBody: mockBody)
        done()
    }

    /// A real answer that shows an object whose id the shadow never learnt (fetched by name, say): the shadow's
    /// 404 only says it never saw it made.
    private func namesUnknownObject(_ exchange: Exchange) -> Bool {
        let map = state.withLock { $0.maps[exchange.namespace] ?? ShadowIDMap() }
        guard let object = exchange.realBody?["object"]?.objectValue ?? exchange.realBody?.objectValue else { return false }
        for key in ["_id", "id"] {
            if let id = object[key]?.stringValue, map.shadowID(id) == nil { return true }
        }
        return false
    }

    private func learn(_ namespace: String, real: JSON?, shadow: JSON?) {
        state.withLock { st in st.maps[namespace, default: ShadowIDMap()].learn(real: real, shadow: shadow) }
    }

    private func record(_ name: String, _ exchange: Exchange, realBody: JSON?, mockStatus: Int, mockBody: JSON?) {
        guard !state.withLock({ $0.closed }) else { return }
        let found = report.record(endpoint: name, realStatus: exchange.realStatus, realBody: realBody,
                                  mockStatus: mockStatus, mockBody: mockBody,
                                  request: "\(exchange.method) \(exchange.path)")
        if !found.isEmpty {
            logger.debug("fidelity: \(name): \(found.map(\.summary).joined(separator: "; "))")
        }
        scheduleWrite()
    }

    /// A stream's events as one JSON value, `{TYPE: [data, …]}` in the order types first came: compared by
    /// ``ShapeDiff``, a type one side lacks is a missing or extra key, an event's data of another shape a
    /// difference under `$.TYPE[*]`.
    static func eventsByType(_ events: [(type: String, data: JSON)]) -> JSON {
        var object = JSONObject()
        for (type, data) in events {
            var list = object[type]?.arrayValue ?? []
            if list.count < maxEventsPerType { list.append(data) }
            object[type] = .array(list)
        }
        return .object(object)
    }

    /// Reads the shadow's stream as it comes: the chain goes on at its first event (the run's id is learnt from
    /// it), the comparison is made at its end.
    private func compareStream(_ exchange: Exchange, status: Int, stream: StreamBody, done: @escaping @Sendable () -> Void) {
        let reader = Mutex((reader: SSEReader(), events: [(type: String, data: JSON)](), learnt: false))
        stream.capture { [self] bytes, finished in
            let firstEvent = reader.withLock { st -> JSON? in
                for event in st.reader.feed(bytes) {
                    guard let type = event.type ?? event.data?["type"]?.stringValue, let data = event.data else { continue }
                    st.events.append((type, .object(data)))
                }
                guard !st.learnt, let first = st.events.first else { return nil }
                st.learnt = true
                return first.data
            }
            if let firstEvent {
                let realFirst = exchange.realEvents?.first?.data
                learn(exchange.namespace, real: realFirst, shadow: firstEvent)
                done()
            }
            guard finished else { return }
            let events = reader.withLock { $0.events }
            queue.async { [self] in
                defer { done() }
                guard let real = exchange.realEvents else {
                    // The real answer was whole (an error, say), the shadow's a stream.
                    return record(Self.endpoint(exchange), exchange, realBody: exchange.realBody, mockStatus: status,
                                  mockBody: Self.eventsByType(events))
                }
                let realEnd = real.last(where: { $0.type == "result" })?.data["status"]?.stringValue
                let mockEnd = events.last(where: { $0.type == "result" })?.data["status"]?.stringValue
                if realEnd != mockEnd {
                    report.notCompared(endpoint: Self.endpoint(exchange), reason: "the run ended otherwise on each side (stopped, or failed, on one)")
                    return scheduleWrite()
                }
                learn(exchange.namespace, real: real.last?.data, shadow: events.last?.data)
                record(Self.endpoint(exchange), exchange, realBody: Self.eventsByType(real), mockStatus: status,
                       mockBody: Self.eventsByType(events))
            }
        }
    }

    // MARK: Writing

    private func scheduleWrite() {
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        let wait = state.withLock { st -> Double? in
            if st.writeScheduled { return nil }
            st.writeScheduled = true
            return max(0, st.lastWrite + Self.writeInterval - now)
        }
        guard let wait else { return }
        queue.asyncAfter(deadline: .now() + wait) { [self] in writeNow() }
    }

    /// Writes the report files (on the queue).
    private func writeNow() {
        state.withLock { st in
            st.writeScheduled = false
            st.lastWrite = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        }
        do {
            try report.write(directory: directory)
        } catch {
            if !state.withLock({ st in defer { st.writeFailed = true }; return st.writeFailed }) {
                logger.warning("record: cannot write the fidelity report into \(directory): \(error)")
            }
        }
    }
}

/// True the first time ``first()`` is called, false after: a callback that must run once.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)
    func first() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
}
