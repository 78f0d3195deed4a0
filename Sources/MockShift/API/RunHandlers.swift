import Foundation
import HTTPTypes
import MockShiftHTTP
import Synchronization

/// Run, status and terminate handlers (API.md §4–5, SPEC §3–4).
enum RunHandlers {
    /// `POST /pipeline/{id}/run`: synchronous (answers when the run ends), or background with
    /// `"background": true` (answers `task_id` at once). Accepts JSON or multipart (API.md §4.5: `inputs` as a
    /// JSON string, each file part named by its input).
    static func run(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let pipeline = try c.app.store.pipeline(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        var inputs = try body.object("inputs")
        for field in c.request.formFields ?? [] where field.filename != nil {
            // A file input, as the SDK sends it (part named by the input) or as the docs do (`inputs.<name>`).
            let name = field.name.hasPrefix("inputs.") ? String(field.name.dropFirst(7)) : field.name
            var file: JSONObject = ["file_name": .string(field.filename ?? name),
                                    "content_type": .string(field.contentType ?? "application/octet-stream"),
                                    "size": .int(Int64(field.value.count))]
            if let text = String(validating: field.value, as: UTF8.self) {
                file["text"] = .string(text)
            } else {
                file["base64"] = .string(Data(field.value).base64EncodedString())
            }
            inputs[name] = .object(file)
        }
        var options = try runOptions(body)
        options.llmFailures = c.injectedLLMFailures
        options.llmScripts = c.app.llmScripts.scripts(namespace: c.namespace, pipeline: pipeline)
        options.scriptedPipeline = pipeline.name
        let (nodes, version) = try runnableNodes(c, pipeline, body)
        let engine = c.app.engine
        if try body.bool("stream") {
            let stream = EventStream(scheduler: c.app.keepAliveScheduler, cutAfter: c.injectedStreamCut)
            let app = c.app, writer = c.writer, namespace = c.namespace, pipelineID = pipeline.id
            let inputs = inputs, options = options
            // The run starts (and its first commit waits) on a Dispatch worker, not on this transport thread:
            // while thousands of streams start at once, the transport keeps serving the streams already open
            // (issue 14 item 2: 5,000 streams). Commits never need a free Dispatch worker (Store.saveRuns).
            DispatchQueue.global().async {
                let run: RunRecord
                do throws(APIError) {
                    run = try engine.start(namespace: namespace, pipelineID: pipelineID, nodes: nodes, version: version,
                                           inputs: inputs, options: options, mode: .stream,
                                           observer: { stream.send($0) }, onFinish: { stream.finish($0) })
                } catch {
                    return writer.send(MockShiftApp.render(error))
                }
                app.streams.track(stream.body, namespace: namespace)
                if app.cancelOnDisconnect {
                    stream.body.onClose { engine.terminate(namespace: namespace, pipelineID: pipelineID, runID: run.id, reply: { _ in }) }
                }
                writer.send(stream.response())
            }
            return .later
        }
        if try body.bool("background") {
            // Answered once the run is committed; an instant run (`--time-scale 0`) does not hold this thread
            // meanwhile, so concurrent requests share a group commit (issue 14 item 5).
            let writer = c.writer, trace = options.recorded["trace_id"]
            try engine.startBackground(namespace: c.namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                       inputs: inputs, options: options, onFinish: webhookCall(c.app, options)) { result in
                switch result {
                case let .success(run):
                    var answer: JSONObject = ["status": "success", "task_id": .string(run.id), "run_id": .string(run.id)]
                    if let trace { answer["trace_id"] = trace }
                    writer.send(MockShiftApp.json(.ok, .object(answer)))
                case let .failure(error):
                    writer.send(MockShiftApp.render(error))
                }
            }
            return .later
        }
        let writer = c.writer
        _ = try engine.start(namespace: c.namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                             inputs: inputs, options: options, mode: .sync, onFinish: { finished in
            writer.send(syncAnswer(finished))
        })
        return .later
    }

    /// `POST /pipeline/{id}/bulk-run` (and the docs' `bulk_run`) `{"runs":[{"inputs":{…}},…]}`: runs them all at
    /// once and answers when every one has ended: `{"status":"success","run_outputs":[{"run_id","status",
    /// "outputs"},…]}` in request order (API.md §4.6); a run that did not complete carries `error` instead.
    static func bulkRun(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let pipeline = try c.app.store.pipeline(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        guard let runs = try body.list("runs") else {
            throw APIError(.badRequest, "runs is required: a list of {\"inputs\": {...}}")
        }
        guard !runs.isEmpty else { return .json(.ok, ["status": "success", "run_outputs": []]) }
        let requests = try runs.enumerated().map { index, item -> (JSONObject, RunOptions) in
            guard let object = item.objectValue else { throw APIError(.badRequest, "runs[\(index)] must be an object") }
            do {
                var options = try runOptions(object)
                options.llmFailures = c.injectedLLMFailures
                options.llmScripts = c.app.llmScripts.scripts(namespace: c.namespace, pipeline: pipeline)
                options.scriptedPipeline = pipeline.name
                return (try object.object("inputs"), options)
            } catch let error as APIError {
                throw APIError(error.kind, "runs[\(index)]: \(error.message)")
            }
        }
        let (nodes, version) = try runnableNodes(c, pipeline, body)
        let collected = Mutex<(results: [JSON?], remaining: Int)>((Array(repeating: nil, count: requests.count), requests.count))
        let writer = c.writer
        var started: [String] = []
        for (index, request) in requests.enumerated() {
            let webhook = webhookCall(c.app, request.1)
            do {
                let run = try c.app.engine.start(namespace: c.namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                                 inputs: request.0, options: request.1, mode: .background, onFinish: { finished in
                    webhook?(finished)
                    var entry: JSONObject = ["run_id": .string(finished.id), "status": .string(finished.status.rawValue)]
                    if finished.status == .completed { entry["outputs"] = .object(finished.result ?? [:]) }
                    else { entry["error"] = .string(finished.error ?? "run \(finished.id) was \(finished.status.rawValue)") }
                    let all = collected.withLock { state -> [JSON]? in
                        state.results[index] = .object(entry)
                        state.remaining -= 1
                        return state.remaining == 0 ? state.results.compactMap { $0 } : nil
                    }
                    if let all { writer.send(MockShiftApp.json(.ok, ["status": "success", "run_outputs": .array(all)])) }
                })
                started.append(run.id)
            } catch {
                for id in started { c.app.engine.terminate(namespace: c.namespace, pipelineID: pipeline.id, runID: id, reply: { _ in }) }
                throw APIError(error.kind, "runs[\(index)]: \(error.message)")
            }
        }
        return .later
    }

    /// The nodes a run executes: the working state, or the deployed snapshot its `version` names (SPEC §3).
    static func runnableNodes(_ c: HandlerContext, _ pipeline: PipelineRecord, _ body: JSONObject) throws -> (JSONObject, String?) {
        guard let version = try body.string("version"), !version.isEmpty else { return (pipeline.nodes, nil) }
        return (try PipelineHandlers.deployedVersion(c, pipeline, version).nodes, version)
    }

    /// The run options the SDK may send besides `inputs` (API.md §4.1).
    static func runOptions(_ body: JSONObject) throws -> RunOptions {
        var options = RunOptions()
        options.overrides = try body.object("node_input_overrides")
        options.streamAllOutputs = try body.bool("stream_all_outputs")
        for key in ["session_id", "trace_id", "webhook_url"] {
            if let value = try body.string(key) { options.recorded[key] = .string(value) }
        }
        if let url = options.recorded["webhook_url"]?.stringValue, Webhooks.url(url) == nil {
            throw APIError(.badRequest, "webhook_url must be an absolute http or https URL (a port of 1-65535; no IPv6 literal host: use localhost or 127.0.0.1)")
        }
        if body["send_intermediate_results"] != nil {
            options.recorded["send_intermediate_results"] = .bool(try body.bool("send_intermediate_results"))
        }
        return options
    }

    /// For a background run with a `webhook_url` (API.md §4.1, issue 11 item 6): the `onFinish` that hands its
    /// final status, the same bytes `GET …/run/status/{id}` answers, to ``Webhooks``; nil without one. Called
    /// on whichever thread finished the run, it only queues.
    static func webhookCall(_ app: MockShiftApp, _ options: RunOptions) -> (@Sendable (RunRecord) -> Void)? {
        guard let text = options.recorded["webhook_url"]?.stringValue, let url = Webhooks.url(text) else { return nil }
        let webhooks = app.webhooks, bodies = app.finalStatusBodies
        return { run in
            let body = bodies.body(for: run.id) { render(run).encoded() }
            webhooks.deliver(namespace: run.namespace, runID: run.id, to: url, body: body)
        }
    }

    /// The answer to a synchronous run once it is final (SPEC §3): 200 with outputs, 409 when terminated, 500
    /// `executor task failed: …` when it failed.
    static func syncAnswer(_ run: RunRecord) -> Response {
        switch run.status {
        case .completed:
            return MockShiftApp.json(.ok, ["status": "success", "run_id": .string(run.id), "outputs": .object(run.result ?? [:])])
        case .terminated:
            return MockShiftApp.render(APIError(.conflict, "run \(run.id) was terminated", runID: run.id))
        default:
            return MockShiftApp.render(APIError(.internalError, "executor task failed: \(run.error ?? "unknown error")", runID: run.id))
        }
    }

    /// `GET /pipeline/{pid}/run/status/{task_id}`: the committed run (SPEC §3).
    static func status(_ c: HandlerContext) throws -> Reply {
        let run = try c.app.engine.status(namespace: c.namespace, pipelineID: c.parameter("id"), runID: c.parameter("task"))
        guard run.status.isFinal else { return .json(.ok, render(run)) }
        // A final run never changes (SPEC §3): its answer is encoded once. The engine call above still decides
        // whether the caller may see the run at all.
        let body = c.app.finalStatusBodies.body(for: run.id) { render(run).encoded() }
        c.writer.send(Response(status: .ok, headerFields: [.contentType: "application/json"], body: body))
        return .later
    }

    /// `POST /pipeline/{pid}/terminate` with `run_id` (JSON, urlencoded or multipart; SPEC §4).
    /// The answer comes once the terminated run is committed: while storage is unavailable the run is stopped at
    /// once but the request waits (parked, no thread held) until the retried commit lands, or answers 503 after
    /// ``RunEngine/changeWaitSeconds`` (issue 11 item 2).
    static func terminate(_ c: HandlerContext) throws -> Reply {
        let runID = try requiredRunID(c)
        let answer = ChangeAnswer(c) { run in
            try requireLive(run, wanted: .terminated)
            return ["status": "success", "run_id": .string(runID), "run_status": "terminated"]
        }
        c.app.engine.terminate(namespace: c.namespace, pipelineID: c.parameter("id"), runID: runID, reply: answer.reply)
        answer.expireIfPending()
        return .later
    }

    /// `POST /pipeline/{pid}/pause` with `run_id` (API.md §5.4, SPEC §4): the run's timers stop. Answers after
    /// the commit, as terminate does.
    static func pause(_ c: HandlerContext) throws -> Reply {
        let runID = try requiredRunID(c)
        let answer = ChangeAnswer(c) { run in
            try requireLive(run, wanted: .paused)
            return ["status": "success", "run_id": .string(runID), "run_status": "paused"]
        }
        c.app.engine.pause(namespace: c.namespace, pipelineID: c.parameter("id"), runID: runID, reply: answer.reply)
        answer.expireIfPending()
        return .later
    }

    /// `POST /pipeline/{pid}/resume` with `run_ids` (a list, API.md §5.4): each run continues where it stopped.
    static func resume(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        var ids: [String] = []
        if case let .string(text)? = body["run_ids"], !text.hasPrefix("[") {
            ids = [text]  // a single id sent as a form field
        } else if let items = try body.list("run_ids") {
            ids = try items.map { item in
                guard let id = item.stringValue, !id.isEmpty else {
                    throw APIError(.badRequest, "run_ids must be a list of run ids (non-empty strings)")
                }
                return id
            }
        }
        if ids.isEmpty, let single = try body.string("run_id") { ids = [single] }
        guard !ids.isEmpty else { throw APIError(.badRequest, "run_ids is required: a list of run ids") }
        for id in ids {  // check them all first, so a bad id resumes nothing
            let run = try c.app.engine.status(namespace: c.namespace, pipelineID: c.parameter("id"), runID: id)
            if run.status.isFinal { throw APIError(.badRequest, "run \(id) already \(run.status.rawValue)", runID: id) }
        }
        // Each resume answers after its commit; the request answers once all have.
        let runIDs = ids
        let statuses = Mutex<(left: Int, byID: [String: JSON])>((runIDs.count, [:]))
        let answer = ChangeAnswer(c) { _ in
            let byID = statuses.withLock { $0.byID }
            return ["status": "success", "run_ids": .array(runIDs.map(JSON.string)),
                    "run_statuses": .object(JSONObject(runIDs.map { ($0, byID[$0] ?? .null) }))]
        }
        let reply = answer.reply
        for id in runIDs {
            c.app.engine.resume(namespace: c.namespace, pipelineID: c.parameter("id"), runID: id) { result in
                switch result {
                case let .failure(error): reply(.failure(error))
                case let .success(run):
                    let last = statuses.withLock { s in
                        s.byID[run.id] = .string(run.status.rawValue)
                        s.left -= 1
                        return s.left == 0
                    }
                    if last { reply(.success(run)) }
                }
            }
        }
        answer.expireIfPending()
        return .later
    }

    static func requiredRunID(_ c: HandlerContext) throws -> String {
        guard let runID = try c.bodyObject().string("run_id"), !runID.isEmpty else {
            throw APIError(.badRequest, "run_id is required")
        }
        return runID
    }

    /// 400 `run T already completed` (or `failed`, or `terminated` when pausing) when a request came too late.
    static func requireLive(_ run: RunRecord, wanted: RunStatus) throws {
        if run.status == wanted { return }
        if run.status.isFinal {
            throw APIError(.badRequest, "run \(run.id) already \(run.status.rawValue)", runID: run.id)
        }
        throw APIError(.internalError, "run \(run.id) is \(run.status.rawValue), not \(wanted.rawValue)", runID: run.id)
    }

    /// A run as JSON, `status` first (SPEC §3): ids, `result` exactly when completed, `error` exactly when
    /// failed, `partial_outputs` for a stopped run, usage, ISO 8601 timestamps (`null` until they happen),
    /// and per-node states.
    static func render(_ run: RunRecord) -> JSON {
        var o: JSONObject = ["status": .string(run.status.rawValue), "task_id": .string(run.id), "run_id": .string(run.id),
                             "pipeline_id": .string(run.pipelineID)]
        if run.status == .completed { o["result"] = .object(run.result ?? [:]) }
        if run.status == .failed { o["error"] = .string(run.error ?? "unknown error") }
        if let partial = run.partialOutputs, run.status != .completed { o["partial_outputs"] = .object(partial) }
        if let usage = run.usage {
            for key in ["input_tokens", "output_tokens", "tokens_used", "credits_used"] { o[key] = usage[key] }
        }
        if let version = run.version { o["version"] = .string(version) }
        if let options = run.options { for (k, v) in options { o[k] = v } }
        o["created_at"] = .string(iso8601(micros: run.createdAt))
        o["started_at"] = run.startedAt.map { .string(iso8601(micros: $0)) } ?? .null
        o["ended_at"] = run.endedAt.map { .string(iso8601(micros: $0)) } ?? .null
        var nodes = JSONObject()
        for node in run.nodes { nodes[node.id] = .string(node.state.rawValue) }
        o["nodes"] = .object(nodes)
        return .object(o)
    }
}

/// The answer to a terminate, pause or resume request (issue 11 item 2): the engine replies once the change is
/// committed, which is at once unless storage is unavailable; then the request stays parked (no thread held)
/// until the retried commit lands, or answers 503 after ``RunEngine/changeWaitSeconds``. Answers exactly once.
final class ChangeAnswer: Sendable {
    private let answered = Mutex(false)
    private let writer: ReplyWriter
    private let render: @Sendable (RunRecord) throws -> JSON

    /// `render` turns the committed run into the 200 answer's JSON, or throws the error to answer instead.
    init(_ c: HandlerContext, render: @escaping @Sendable (RunRecord) throws -> JSON) {
        writer = c.writer
        self.render = render
    }

    /// What the engine calls with the committed run or an error.
    var reply: RunEngine.ChangeReply {
        { [self] result in
            do {
                send(MockShiftApp.json(.ok, try render(try result.get())))
            } catch let error as APIError {
                send(MockShiftApp.render(error))
            } catch {
                send(MockShiftApp.render(APIError(.internalError, "internal error: \(error)")))
            }
        }
    }

    /// Called after the engine call: when no reply came yet (a commit pending), answers 503 if none comes within
    /// ``RunEngine/changeWaitSeconds``. No timer for the usual case, answered already.
    func expireIfPending() {
        guard !answered.withLock({ $0 }) else { return }
        DispatchQueue.global().asyncAfter(deadline: .now() + RunEngine.changeWaitSeconds) { [self] in
            send(MockShiftApp.render(APIError(.unavailable, "the change is not stored yet: storage unavailable; try again")))
        }
    }

    private func send(_ response: Response) {
        guard answered.withLock({ done in defer { done = true }; return !done }) else { return }
        writer.send(response)
    }
}
