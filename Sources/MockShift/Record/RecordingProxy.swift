import Dispatch
import Foundation
import HTTPTypes
import Logging
import MockShiftHTTP
import Synchronization

/// Record mode (`serve --record URL --record-dir DIR`, issue 15 items 2 and 5): every `/v1` HTTP request is sent on
/// to the upstream API with the caller's `Authorization`, and its answer relayed to the client (status, body; a
/// Server-Sent-Events answer event by event as it arrives, so a Stop pressed during a recorded stream reaches the
/// real run through the forwarded terminate). What went by is kept in DIR (``RecordingFolder``): the pipelines,
/// chatbots and agents seen, and the scripted answers of the pipeline runs seen (``RecordedAnswers``).
///
/// - The upstream is reached through ``UpstreamProxy`` (URLSession). No answer at all: 502
///   `{"status":"failed","error":"upstream URL: …"}`. A stream the upstream breaks off gets one last event, `result`
///   with `status` `failed` and the reason, so the client's stream ends clearly (the SDK hands it over as a failed
///   chunk); what was recorded before stays.
/// - A client that leaves a relayed stream cancels the upstream request (as its own disconnect would).
/// - Objects are read again from the upstream, with the caller's key, after a request that creates or changes one
///   (`POST /pipeline`, `/update/pipeline/{id}`, …, `POST /chatbot`, `/agent`, `/update/agent/{id}`), and kept as the
///   fetches the client makes return them; a delete forgets them. Runs: the pipeline that runs is read (the version
///   the request names, else the working state), and once the run is known to have completed (the synchronous
///   answer, the stream's `result`, or a background run's status poll) its answers are computed and kept. That
///   work happens on one queue of its own, never delaying an answer.
/// - Each exchange relayed is also answered by this daemon itself and the shapes compared (``FidelityShadow``):
///   `fidelity-report.json` and `fidelity-report.md` in DIR. That too happens after the answer is relayed, on a
///   queue of its own.
/// - Not proxied: WebSocket sessions (`/v1/ws/session`, served by this daemon as usual), `/_mock/…` (this daemon's
///   own test controls). Not recorded as scripted answers: chatbot turns, agent runs, bulk runs, multipart runs.
public final class RecordingProxy: Sendable {
    public let proxy: UpstreamProxy
    public let folder: RecordingFolder
    /// The mock's own answers to what went by, compared with the real ones (issue 15 item 4).
    public let fidelity: FidelityShadow
    private let logger: Logger
    /// Reads objects and versions from the upstream in the background, in order.
    private let queue = DispatchQueue(label: "mockshift.record")
    /// Readers of the upstream, one per API key (URLSession's connections are kept per session).
    private let readers = Mutex<[String: URLSessionUpstream]>([:])
    /// Background runs waiting for a status poll that says they completed, by task id (at most ``maxPendingRuns``).
    private let pending = Mutex<[String: RunContext]>([:])
    /// Redactions already reported (each is logged once).
    private let reported = Mutex<Set<String>>([])

    /// Background runs followed at once; past it the list starts again.
    static let maxPendingRuns = 10_000
    /// The request header fields passed on to the upstream.
    static let forwardedHeaders: [HTTPField.Name] = [.authorization, .contentType, .accept, .userAgent]
    /// The answer header fields passed back to the client.
    static let relayedHeaders = ["content-type", "retry-after", "allow", "cache-control"]

    /// Nil when `upstream` is no http(s) URL.
    public init?(upstream: String, directory: String, logger: Logger) {
        guard let proxy = UpstreamProxy(base: upstream) else { return nil }
        self.proxy = proxy
        self.folder = RecordingFolder(directory: directory, logger: logger)
        self.fidelity = FidelityShadow(directory: directory, logger: logger)
        self.logger = logger
    }

    /// True for requests this daemon forwards: `/v1/…` but the WebSocket session upgrade.
    public static func forwards(_ path: String) -> Bool {
        path.hasPrefix("/v1/") && path != "/v1/ws/session"
    }

    // MARK: Relaying

    /// What a run request said, and what is learnt about it as it goes.
    final class RunContext: @unchecked Sendable {
        // @unchecked: written on the proxy's queue before the answer ends, read on the recorder's queue after.
        let pipelineID: String
        let key: String
        var run: ObservedRun?
        var inputs: JSONObject
        var overrides: JSONObject
        var version: String?
        var outputs: JSONObject?
        var startedAt: Double?
        var tokens: [String: [(text: String, at: Double)]] = [:]

        init(pipelineID: String, key: String, inputs: JSONObject, overrides: JSONObject, version: String?) {
            self.pipelineID = pipelineID
            self.key = key
            self.inputs = inputs
            self.overrides = overrides
            self.version = version
        }
    }

    /// Forwards `request` and relays the answer through `writer`; then hands the exchange to ``fidelity``, whose
    /// shadow answers for `namespace` (the caller's, as this daemon authenticated it).
    public func forward(_ request: Request, writer: ReplyWriter, namespace: String) {
        let authorization = request.head.headerFields[.authorization]
        let key = Self.key(authorization)
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let method = request.head.method.rawValue
        // A pipeline run: its answers are computed once it completes (the pipeline is read meanwhile).
        var observed: RunContext?
        if method == "POST", parts.count == 4, parts[1] == "pipeline", parts[3] == "run",
           let body = (try? JSON.parse(request.body))?.objectValue {
            let context = RunContext(pipelineID: parts[2], key: key, inputs: body["inputs"]?.objectValue ?? [:],
                                     overrides: body["node_input_overrides"]?.objectValue ?? [:],
                                     version: body["version"]?.stringValue)
            observed = context
            queue.async { [self] in prepare(context) }
        }
        let run = observed
        var headers: [(String, String)] = []
        for name in Self.forwardedHeaders {
            if let value = request.head.headerFields[name] { headers.append((name.rawName, value)) }
        }
        let relay = Relay(writer: writer, upstream: proxy.base.absoluteString, run: run)
        let cancel = proxy.forward(
            method: method, path: String(request.path.dropFirst(3)), query: request.query.map { ($0.name, $0.value) },
            headers: headers, body: request.body,
            handlers: .init(
                head: { status, fields in relay.head(status, fields) },
                data: { bytes in relay.data(bytes) },
                end: { [self] error in
                    let outcome = relay.end(error)
                    if let outcome { observe(method: method, parts: parts, query: request.query, key: key, status: outcome.status, body: outcome.body, run: run) }
                    if let run, run.outputs != nil { queue.async { [self] in finish(run) } }
                    fidelity.submit(relay.exchange(request, namespace: namespace, error: error))
                }))
        relay.onClientGone { cancel() }
    }

    /// The key of an `Authorization` header (`Bearer KEY`), or `None` (what the SDK sends without a key).
    static func key(_ authorization: String?) -> String {
        guard let authorization, let space = authorization.firstIndex(of: " ") else { return "None" }
        let key = authorization[authorization.index(after: space)...].trimmingCharacters(in: .whitespaces)
        return key.isEmpty ? "None" : key
    }

    /// One forwarded request's answer on its way to the client.
    final class Relay: @unchecked Sendable {
        // @unchecked: every method runs on the proxy's one delegate queue (``UpstreamProxy``), but `onClientGone`,
        // whose state is under `lock`.
        private let writer: ReplyWriter
        private let upstream: String
        private let run: RunContext?
        private var status = 0
        private var headers: HTTPFields = [:]
        private var buffer: [UInt8] = []
        private var stream: StreamBody?
        private var reader = SSEReader()
        private var runID = ""
        private var sawResult = false
        /// A stream's events (type, data) for the fidelity report, at most ``FidelityShadow/maxEventsPerType`` each.
        private var events: [(type: String, data: JSON)] = []
        private var eventCounts: [String: Int] = [:]
        /// The last two bytes relayed: a blank line there means the stream stopped between two events.
        private var tail: [UInt8] = [10, 10]
        private let lock = Mutex<(ended: Bool, gone: (@Sendable () -> Void)?)>((false, nil))

        init(writer: ReplyWriter, upstream: String, run: RunContext?) {
            self.writer = writer
            self.upstream = upstream
            self.run = run
        }

        /// Calls `cancel` if the client leaves a relayed stream before its end.
        func onClientGone(_ cancel: @escaping @Sendable () -> Void) {
            lock.withLock { $0.gone = cancel }
        }

        func head(_ status: Int, _ fields: [(String, String)]) {
            self.status = status
            for (name, value) in fields where RecordingProxy.relayedHeaders.contains(name.lowercased()) {
                if let n = HTTPField.Name(name) { headers[n] = value }
            }
            guard (200..<300).contains(status), headers[.contentType]?.lowercased().hasPrefix("text/event-stream") == true else { return }
            let body = StreamBody()
            stream = body
            body.onClose { [weak self] in
                let cancel = self?.lock.withLock { $0.ended ? nil : $0.gone }
                cancel?()
            }
            writer.send(Response(status: HTTPResponse.Status(code: status), headerFields: headers, stream: body))
        }

        func data(_ bytes: [UInt8]) {
            guard let stream else { return buffer += bytes }
            stream.write(bytes)
            tail = Array((tail + bytes.suffix(2)).suffix(2))
            let now = RecordingProxy.milliseconds()
            for event in reader.feed(bytes) { see(event, at: now) }
        }

        /// What a stream's event tells about the run.
        private func see(_ event: SSEReader.Event, at time: Double) {
            let type = event.type ?? event.data?["type"]?.stringValue
            if let id = event.data?["run_id"]?.stringValue { runID = id }
            if let type, let data = event.data, eventCounts[type, default: 0] < FidelityShadow.maxEventsPerType {
                eventCounts[type, default: 0] += 1
                events.append((type, .object(data)))
            }
            switch type {
            case "start": if run?.startedAt == nil { run?.startedAt = time }
            case "stream":
                if let name = event.data?["output_name"]?.stringValue, let value = event.data?["output_value"]?.stringValue {
                    run?.tokens[name, default: []].append((value, time))
                }
            case "result":
                sawResult = true
                if event.data?["status"]?.stringValue == "completed" { run?.outputs = event.data?["outputs"]?.objectValue ?? [:] }
            default: break
            }
        }

        /// The end of the upstream's answer. Returns the status and body of a whole answer that was not a stream
        /// (for the recorder to look at), nil otherwise.
        func end(_ error: String?) -> (status: Int, body: [UInt8])? {
            lock.withLock { $0.ended = true }
            if let stream {
                if let error, !sawResult {
                    // The upstream broke the stream off: end it with a clear failed result (SPEC §5's terminal event).
                    let object: JSONObject = ["status": "failed", "type": "result",
                                              "error": .string("upstream \(upstream) broke off the stream: \(error)"),
                                              "run_id": .string(runID), "task_id": .string(runID)]
                    stream.finish(with: (tail == [10, 10] ? [] : [10, 10]) + SSEChannel.frame("result", object))
                } else {
                    stream.finish()
                }
                return nil
            }
            if let error {
                let reason = status == 0 ? "upstream \(upstream) gave no answer: \(error)"
                    : "upstream \(upstream) broke off its answer: \(error)"
                writer.send(MockShiftApp.render(APIError(.badGateway, reason)))
                return nil
            }
            writer.send(Response(status: HTTPResponse.Status(code: status), headerFields: headers, body: buffer))
            if let run, (200..<300).contains(status), let outputs = (try? JSON.parse(buffer))?["outputs"]?.objectValue {
                run.outputs = outputs  // a synchronous run's answer
            }
            return (status, buffer)
        }

        /// The exchange as the fidelity shadow takes it (after ``end(_:)``): the request, the real status and body
        /// (its bytes, parsed on the shadow's queue) or the stream's events.
        func exchange(_ request: Request, namespace: String, error: String?) -> FidelityShadow.Exchange {
            FidelityShadow.Exchange(
                namespace: namespace, method: request.head.method.rawValue, path: request.path, query: request.query,
                contentType: request.head.headerFields[.contentType], body: request.body, realStatus: status,
                realBytes: stream == nil ? buffer : nil, realEvents: stream == nil ? nil : events,
                broken: error != nil && !(stream != nil && sawResult))
        }
    }

    static func milliseconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1_000_000 }

    // MARK: Recording

    /// Looks at a whole (non-stream) answer: objects fetched, created, changed or deleted; background runs started
    /// and polled.
    private func observe(method: String, parts: [String], query: [(name: String, value: String)], key: String, status: Int,
                         body: [UInt8], run: RunContext?) {
        guard (200..<300).contains(status), parts.first == "v1", let answer = (try? JSON.parse(body))?.objectValue else { return }
        let route = Array(parts.dropFirst())
        let queryValue = { (name: String) in query.first(where: { $0.name == name })?.value }
        let answeredID = answer["id"]?.stringValue
        switch (method, route.count, route.first) {
        case ("GET", 1, "pipeline"?) where (queryValue("version") ?? "").isEmpty:
            if let id = answer["object"].flatMap({ $0.objectValue }).flatMap(FixtureDocuments.objectID) {
                queue.async { [self] in refreshPipeline(id, key: key) }
            }
        case ("POST", 1, "pipeline"?):
            if let id = answeredID { queue.async { [self] in refreshPipeline(id, key: key) } }
        case ("POST", 3, "pipeline"?) where route[2] == "duplicate":
            if let id = answeredID { queue.async { [self] in refreshPipeline(id, key: key) } }
        case ("POST", 3, "update"?) where route[1] == "pipeline":
            queue.async { [self] in refreshPipeline(route[2], key: key) }
        case ("POST", 3, "pipeline"?) where ["revert", "remove-node"].contains(route[2]):
            queue.async { [self] in refreshPipeline(route[1], key: key) }
        case ("DELETE", 2, "pipeline"?):
            queue.async { [self] in folder.forget(.pipeline, id: route[1]) }
        case ("GET", 1, "chatbot"?):
            if let object = answer["object"]?.objectValue { queue.async { [self] in keepChatbot(object, key: key) } }
        case ("POST", 1, "chatbot"?):
            if let id = answeredID { queue.async { [self] in refresh("chatbot", id, key: key) } }
        case ("DELETE", 2, "chatbot"?):
            queue.async { [self] in folder.forget(.chatbot, id: route[1]) }
        case ("GET", 1, "agent"?):
            if let object = answer["object"]?.objectValue { queue.async { [self] in keepAgent(object) } }
        case ("POST", 1, "agent"?):
            if let id = answeredID { queue.async { [self] in refresh("agent", id, key: key) } }
        case ("POST", 3, "update"?) where route[1] == "agent":
            queue.async { [self] in refresh("agent", route[2], key: key) }
        case ("DELETE", 2, "agent"?):
            queue.async { [self] in folder.forget(.agent, id: route[1]) }
        case ("POST", 3, "pipeline"?) where route[2] == "run":
            // A background run: its answers once a status poll says it completed.
            if let run, run.outputs == nil, let task = answer["task_id"]?.stringValue {
                pending.withLock { waiting in
                    // Runs nobody polls to the end are forgotten past a bound, not kept forever.
                    if waiting.count >= Self.maxPendingRuns { waiting.removeAll() }
                    waiting[task] = run
                }
            }
        case ("GET", 5, "pipeline"?) where route[2] == "run" && route[3] == "status":
            guard answer["status"]?.stringValue == "completed", let outputs = answer["result"]?.objectValue,
                  let waiting = pending.withLock({ $0.removeValue(forKey: route[4]) }) else { return }
            waiting.outputs = outputs
            queue.async { [self] in finish(waiting) }
        default: break
        }
    }

    private func reader(_ key: String) -> URLSessionUpstream? {
        readers.withLock { cache in
            if let reader = cache[key] { return reader }
            let reader = URLSessionUpstream(base: proxy.base.absoluteString, apiKey: key)
            cache[key] = reader
            return reader
        }
    }

    /// Reads a pipeline and its latest deployed version, keeps it; returns the object and the version objects.
    @discardableResult
    private func refreshPipeline(_ id: String, key: String) -> (object: JSONObject, versions: [String: JSONObject])? {
        guard let reader = reader(key) else { return nil }
        do {
            guard let object = try reader.get("/pipeline", query: [("id", id)])["object"]?.objectValue else {
                throw UpstreamError.badBody("no object in the answer")
            }
            var versions: [String: JSONObject] = [:]
            if let current = object["currentVersion"]?.stringValue, SemanticVersion.isValid(current),
               let snapshot = try reader.get("/pipeline", query: [("id", id), ("version", current)])["object"]?.objectValue {
                versions[current] = snapshot
            }
            let (document, redactions) = try FixtureDocuments.pipeline(object, versions: versions, folderID: nil)
            let name = document["name"]?.stringValue ?? id
            report(redactions, of: "pipeline '\(name)'")
            folder.keep(.pipeline, id: id, name: name, document: .object(document))
            return (object, versions)
        } catch {
            logger.warning("record: cannot read pipeline \(id) from the upstream: \(error)")
            return nil
        }
    }

    private func refresh(_ kind: String, _ id: String, key: String) {
        guard let reader = reader(key) else { return }
        do {
            guard let object = try reader.get("/\(kind)", query: [("id", id)])["object"]?.objectValue else {
                throw UpstreamError.badBody("no object in the answer")
            }
            if kind == "chatbot" { keepChatbot(object, key: key) } else { keepAgent(object) }
        } catch {
            logger.warning("record: cannot read \(kind) \(id) from the upstream: \(error)")
        }
    }

    /// Keeps a chatbot, with its pipeline (read first when not kept yet: a fixture chatbot names a fixture pipeline).
    private func keepChatbot(_ object: JSONObject, key: String) {
        guard let id = FixtureDocuments.objectID(object) else { return }
        let link = FixtureDocuments.chatbotPipeline(object)
        guard let pipelineID = link.id else { return }
        if folder.name(.pipeline, id: pipelineID) == nil { refreshPipeline(pipelineID, key: key) }
        guard let pipelineName = folder.name(.pipeline, id: pipelineID) else { return }
        do {
            let (document, redactions) = try FixtureDocuments.chatbot(object, pipelineName: pipelineName, version: link.version)
            let name = document["name"]?.stringValue ?? id
            report(redactions, of: "chatbot '\(name)'")
            folder.keep(.chatbot, id: id, name: name, document: ["chatbots": [.object(document)]])
        } catch {
            logger.warning("record: cannot keep chatbot \(id): \(error)")
        }
    }

    private func keepAgent(_ object: JSONObject) {
        guard let id = FixtureDocuments.objectID(object) else { return }
        do {
            let (document, redactions) = try FixtureDocuments.agent(object)
            let name = document["name"]?.stringValue ?? id
            report(redactions, of: "agent '\(name)'")
            folder.keep(.agent, id: id, name: name, document: ["agents": [.object(document)]])
        } catch {
            logger.warning("record: cannot keep agent \(id): \(error)")
        }
    }

    /// Reads the pipeline a run runs (the version it names, else the working state), on the recorder's queue.
    private func prepare(_ context: RunContext) {
        guard let (object, versions) = refreshPipeline(context.pipelineID, key: context.key),
              let name = object["name"]?.stringValue else { return }
        var nodes = object["nodes"]?.objectValue
        if var version = context.version, !version.isEmpty {
            if version == "latest" { version = object["currentVersion"]?.stringValue ?? version }
            nodes = versions[version]?["nodes"]?.objectValue
                ?? (try? reader(context.key)?.get("/pipeline", query: [("id", context.pipelineID), ("version", version)]))?["object"]?["nodes"]?.objectValue
        }
        guard let nodes else { return }
        var run = ObservedRun(pipelineName: name, nodes: nodes, inputs: context.inputs)
        run.overrides = context.overrides
        context.run = run
    }

    /// Keeps the answers of a run that completed (after ``prepare(_:)``, on the same queue).
    private func finish(_ context: RunContext) {
        guard var run = context.run, let outputs = context.outputs else {
            logger.debug("record: run of pipeline \(context.pipelineID) not recorded (its pipeline could not be read)")
            return
        }
        run.outputs = outputs
        run.startedAt = context.startedAt
        run.tokens = context.tokens
        var rules: [JSONObject] = []
        for rule in RecordedAnswers.rules(for: run) {
            // Answers and prompts are the run's texts: a key shaped like one in them is not written either.
            let (cleaned, findings) = SecretRedactor.redact(.object(rule))
            report(findings.map { FixtureDocuments.Redaction(node: rule["node_id"]?.stringValue, field: $0.path) },
                   of: "scripted answer of pipeline '\(run.pipelineName)'")
            if let object = cleaned.objectValue { rules.append(object) }
        }
        logger.debug("record: run of pipeline '\(run.pipelineName)' gave \(rules.count) scripted answer(s)")
        folder.keep(scripts: rules)
    }

    private func report(_ redactions: [FixtureDocuments.Redaction], of object: String) {
        for r in redactions {
            let line = "\(object)\(r.node.map { " node '\($0)'" } ?? "") field '\(r.field)'"
            if reported.withLock({ $0.insert(line).inserted }) { logger.notice("record: redacted \(line)") }
        }
    }

    /// Waits until the work queued so far (object reads, answers) is written: for a clean stop.
    public func drain() { queue.sync {} }
}

/// Reads Server-Sent Events from bytes as they arrive: `event:` and `data:` lines up to a blank line (`\n` or
/// `\r\n`); comments and other fields are skipped. `data` is the JSON object of the event's data, when it is one.
struct SSEReader {
    struct Event {
        var type: String?
        var data: JSONObject?
    }

    private var pending: [UInt8] = []

    mutating func feed(_ bytes: [UInt8]) -> [Event] {
        pending += bytes.filter { $0 != 13 }
        var events: [Event] = []
        while let end = boundary() {
            let block = String(decoding: pending[..<end], as: UTF8.self)
            pending.removeFirst(end + 2)
            var event = Event()
            var data = ""
            for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("event:") {
                    event.type = line.dropFirst(6).trimmingCharacters(in: .whitespaces)
                } else if line.hasPrefix("data:") {
                    data += (data.isEmpty ? "" : "\n") + line.dropFirst(5).drop(while: { $0 == " " })
                }
            }
            event.data = (try? JSON.parse(data))?.objectValue
            if event.type != nil || event.data != nil { events.append(event) }
        }
        return events
    }

    /// Where the first blank line begins (the index of its first `\n`).
    private func boundary() -> Int? {
        guard pending.count >= 2 else { return nil }
        for i in 0..<(pending.count - 1) where pending[i] == 10 && pending[i + 1] == 10 { return i }
        return nil
    }
}
