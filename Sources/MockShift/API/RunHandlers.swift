import HTTPTypes
import MockShiftHTTP

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
        var inputs = try objectField(body, "inputs")
        for field in c.request.formFields ?? [] where field.filename != nil {
            let name = field.name.hasPrefix("inputs.") ? String(field.name.dropFirst(7)) : field.name
            inputs[name] = .string(field.text)
        }
        let overrides = try objectField(body, "node_input_overrides")
        if flag(body["stream"]) {
            throw APIError(.notImplemented, "Streaming runs are not served yet; use background: true and poll the run status")
        }
        var nodes = pipeline.nodes
        let version = body["version"]?.stringValue
        if let version, !version.isEmpty {
            nodes = try PipelineHandlers.deployedVersion(c, pipeline, version).nodes
        }
        let mode: RunMode = flag(body["background"]) ? .background : .sync
        if mode == .background {
            let run = try c.app.engine.start(namespace: c.namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                             inputs: inputs, overrides: overrides, mode: .background)
            return .json(.ok, ["status": "success", "task_id": .string(run.id), "run_id": .string(run.id)])
        }
        let writer = c.writer
        _ = try c.app.engine.start(namespace: c.namespace, pipelineID: pipeline.id, nodes: nodes, version: version,
                                   inputs: inputs, overrides: overrides, mode: .sync) { finished in
            writer.send(syncAnswer(finished))
        }
        return .later
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
        return .json(.ok, render(run))
    }

    /// `POST /pipeline/{pid}/terminate` with `run_id` (JSON, urlencoded or multipart; SPEC §4).
    static func terminate(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let runID = body["run_id"]?.stringValue, !runID.isEmpty else {
            throw APIError(.badRequest, "run_id is required")
        }
        let run = try c.app.engine.terminate(namespace: c.namespace, pipelineID: c.parameter("id"), runID: runID)
        switch run.status {
        case .terminated:
            return .json(.ok, ["status": "success", "run_id": .string(runID), "run_status": "terminated"])
        case .completed, .failed:
            throw APIError(.badRequest, "run \(runID) already \(run.status.rawValue)", runID: runID)
        case .inProgress, .paused:
            throw APIError(.internalError, "run \(runID) could not be terminated", runID: runID)
        }
    }

    /// A route a later issue serves: 501 with a clear message, never a fake answer.
    static func notYet(_ feature: String) -> Handler {
        { _ in throw APIError(.notImplemented, "\(feature) are not served by this MockShift version yet") }
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
        o["created_at"] = .string(iso8601(micros: run.createdAt))
        o["started_at"] = run.startedAt.map { .string(iso8601(micros: $0)) } ?? .null
        o["ended_at"] = run.endedAt.map { .string(iso8601(micros: $0)) } ?? .null
        var nodes = JSONObject()
        for node in run.nodes { nodes[node.id] = .string(node.state.rawValue) }
        o["nodes"] = .object(nodes)
        return .object(o)
    }

    /// An object field that may come as an object (JSON body) or as JSON text (multipart, API.md §4.5).
    static func objectField(_ body: JSONObject, _ name: String) throws -> JSONObject {
        switch body[name] {
        case nil, .null?: return [:]
        case let .object(o)?: return o
        case let .string(text)?:
            guard let o = (try? JSON.parse(text))?.objectValue else { throw APIError(.badRequest, "\(name) must be a JSON object") }
            return o
        default: throw APIError(.badRequest, "\(name) must be an object")
        }
    }
}

/// Test-control handlers (SPEC §7); more arrive with issue 4.
enum MockHandlers {
    /// `GET /_mock/health`: the daemon is alive.
    static func health(_ c: HandlerContext) throws -> Reply {
        .json(.ok, ["status": "ok", "live_runs": .int(Int64(c.app.engine.liveCount))])
    }
}
