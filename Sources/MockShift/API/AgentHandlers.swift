import Foundation
import HTTPTypes
import MockShiftHTTP

/// Agent handlers (SPEC §11, API-CHAT §3, issue 13 item 3): `Agent.new/fetch/list/save/delete` and the functional
/// `Agent.run` over HTTP. An agent is kept as the document the SDK saved, so `Agent.from_json` reads back what it
/// wrote (the input and output ids it minted included). A functional run is a pipeline run (STYLE "a chatbot turn
/// is a run"): one simulated LLM node per text output, started through ``RunEngine/start`` under the agent's id,
/// so the clock, faults and `/_mock/runs` apply. Conversational agents run through WebSocket sessions (SPEC §10).
///
/// 4xx answers use the agent routes' format `{"error": …}` (API-CHAT §3.4); a run that fails answers 500
/// `{"status":"failed","error":"Failed to run agent: …"}`.
enum AgentHandlers {
    /// Keys of a save body that are not part of the agent's document (API-CHAT §3.2).
    static let saveOnlyKeys: Set<String> = ["deploy", "bump", "branch_id", "name", "_id", "id", "mainBranch",
                                            "created_at", "updated_at", "currentVersion", "versions"]

    // MARK: Agent objects

    /// `POST /agent` (`Agent.new`): `{"status":"success","id":ID}`; 400 without a name or `llm_client_key` with
    /// `provider` and `model_id`, or with malformed `inputs`/`outputs`/`tools`.
    static func create(_ c: HandlerContext) throws -> Reply {
        let body = try plain { try c.bodyObject() }
        let (name, document) = try plain { try checked(body) }
        let now = wallClockMicros()
        let agent = AgentRecord(id: IDs.make(), namespace: c.namespace, name: name, document: document,
                                currentVersion: nil, createdAt: now, modifiedAt: now)
        try c.app.store.insertAgent(agent)
        return .json(.ok, ["status": "success", "id": .string(agent.id)])
    }

    /// `GET /agent?id=…|name=…` (`Agent.fetch`, and `Agent.new`'s re-fetch): `{"status":"success","object":{…}}`.
    static func fetch(_ c: HandlerContext) throws -> Reply {
        let id = c.request.queryValue("id") ?? "", name = c.request.queryValue("name") ?? ""
        var agent: AgentRecord?
        if !id.isEmpty {
            agent = try c.app.store.agent(namespace: c.namespace, id: id)
            if !name.isEmpty, agent?.name != name { agent = nil }
        } else if !name.isEmpty {
            agent = try c.app.store.agent(namespace: c.namespace, name: name)
        } else {
            throw plain(APIError(.badRequest, "Agent ID or name is required"))
        }
        guard let agent else { throw plain(APIError(.notFound, "Agent not found")) }
        return .json(.ok, ["status": "success", "object": render(agent)])
    }

    /// `GET /agents` (`Agent.list`): newest first; `objects` with `verbose=true`, else `object_ids`.
    static func list(_ c: HandlerContext) throws -> Reply {
        let (offset, limit) = try plain { (try PipelineHandlers.intQuery(c, "offset") ?? 0, try PipelineHandlers.intQuery(c, "limit") ?? 1000) }
        guard offset >= 0, limit >= 0 else { throw plain(APIError(.badRequest, "offset and limit must not be negative")) }
        let agents = try c.app.store.agents(namespace: c.namespace, offset: offset, limit: min(limit, 10_000))
        if c.request.queryValue("verbose") == "true" {
            return .json(.ok, ["status": "success", "objects": .array(agents.map(render))])
        }
        return .json(.ok, ["status": "success", "object_ids": .array(agents.map { .string($0.id) })])
    }

    /// `POST /update/agent/{id}` (`agent.save(deploy=, bump=, description=)`): replaces the document; with
    /// `deploy: true` also snapshots a version numbered as pipelines are (SPEC §8). `{"status":"success",
    /// "id", "version"?}`; 404 for an unknown agent.
    static func update(_ c: HandlerContext) throws -> Reply {
        let body = try plain { try c.bodyObject() }
        let (name, document) = try plain { try checked(body) }
        let deploy = try plain { try body.bool("deploy") }
        let bump = try plain { try body.string("bump") }
        if let bump, !["major", "minor", "patch"].contains(bump) {
            throw plain(APIError(.badRequest, "bump must be major, minor or patch"))
        }
        let next: (@Sendable (String?) -> String)?
        if deploy { next = { @Sendable current in SemanticVersion.next(after: current, bump: bump) } } else { next = nil }
        guard let agent = try c.app.store.updateAgent(namespace: c.namespace, id: c.parameter("id"), name: name,
                                                      document: document, at: wallClockMicros(), nextVersion: next) else {
            throw plain(APIError(.notFound, "Agent not found"))
        }
        var answer: JSONObject = ["status": "success", "id": .string(agent.id)]
        if deploy, let version = agent.currentVersion { answer["version"] = .string(version) }
        return .json(.ok, .object(answer))
    }

    /// `DELETE /agent/{id}` (`agent.delete()`): `{"status":"success"}`; 404 when unknown.
    static func delete(_ c: HandlerContext) throws -> Reply {
        guard try c.app.store.deleteAgent(namespace: c.namespace, id: c.parameter("id")) else {
            throw plain(APIError(.notFound, "Agent not found"))
        }
        return .json(.ok, ["status": "success"])
    }

    /// An agent as `GET /agent` returns it: the saved document plus `_id`, `id`, `name`, `mainBranch` (the id: one
    /// branch offline) and the keys `Agent.from_json` ignores (`created_at`, `updated_at`, `currentVersion`)
    /// (SPEC §11, API-CHAT §3.3). `agent_type` is always there (without it a later `create_session` raises).
    static func render(_ a: AgentRecord) -> JSON {
        var o: JSONObject = ["_id": .string(a.id), "id": .string(a.id), "name": .string(a.name), "mainBranch": .string(a.id)]
        for (key, value) in a.document { o[key] = value }
        o["agent_type"] = .string(a.isConversational ? "conversational" : "functional")
        o["created_at"] = .string(iso8601(micros: a.createdAt))
        o["updated_at"] = .string(iso8601(micros: a.modifiedAt))
        o["currentVersion"] = a.currentVersion.map(JSON.string) ?? .null
        return .object(o)
    }

    /// The name and document of a create or save body. `llm_client_key` must name `provider` and `model_id`
    /// (`Agent.from_json` cannot read an agent without them); `inputs`/`outputs` are `{id: {name, io_type,
    /// description}}` with distinct names; `tools` an object or list.
    static func checked(_ body: JSONObject) throws -> (name: String, document: JSONObject) {
        guard let name = try body.string("name"), !name.isEmpty else { throw APIError(.badRequest, "Agent name is required") }
        let llm = try body.object("llm_client_key")
        guard let provider = try llm.string("provider"), !provider.isEmpty,
              let model = try llm.string("model_id"), !model.isEmpty else {
            throw APIError(.badRequest, "llm_client_key with provider and model_id is required")
        }
        if let type = try body.string("agent_type"), !["functional", "conversational"].contains(type.lowercased()) {
            throw APIError(.badRequest, "agent_type must be functional or conversational")
        }
        for key in ["inputs", "outputs"] {
            var names = Set<String>()
            for (id, value) in try body.object(key) {
                guard let io = value.objectValue, let ioName = try io.string("name"), !ioName.isEmpty else {
                    throw APIError(.badRequest, "\(key).\(id) must be an object with a name")
                }
                guard names.insert(ioName).inserted else { throw APIError(.badRequest, "\(key): the name '\(ioName)' is used twice") }
            }
        }
        switch body["tools"] {
        case nil, .null?, .object?, .array?: break
        default: throw APIError(.badRequest, "tools must be an object or a list")
        }
        var document = JSONObject()
        for (key, value) in body where !saveOnlyKeys.contains(key) {
            // Objects sent as form text are kept as JSON, like a JSON body's.
            if case let .string(text) = value, ["llm_client_key", "inputs", "outputs", "tools", "memory_config"].contains(key) {
                document[key] = (try? JSON.parse(text)) ?? value
            } else {
                document[key] = value
            }
        }
        document["agent_type"] = .string((try body.string("agent_type") ?? "functional").lowercased())
        return (name, document)
    }

    // MARK: Functional runs

    /// `POST /agent/{id}/run` (functional `agent.run(inputs=…)`): `{"inputs": {name: value},
    /// "additional_instructions"?}` as JSON, or a form with `inputs` as JSON text and file parts named after
    /// inputs. Waits the simulated LLM time, then `{"status":"success","run_id":R,"outputs":{output_id: value}}`.
    /// 400 for an unknown input name, or a conversational agent (they run through sessions); 404 unknown agent;
    /// 500 `Failed to run agent: …` when the run fails (an injected LLM fault).
    static func run(_ c: HandlerContext) throws -> Reply {
        let (inputs, extra) = try plain { try runInputs(c) }
        guard let agent = try c.app.store.agent(namespace: c.namespace, id: c.parameter("id")) else {
            throw plain(APIError(.notFound, "Agent not found"))
        }
        if agent.isConversational {
            throw plain(APIError(.badRequest, "agent \(agent.id) is conversational: run it through a session (agent.run(text) over WebSocket)"))
        }
        let declared = ioList(agent.document["inputs"])
        let names = Set(declared.map(\.name))
        if let unknown = inputs.keys.first(where: { !names.contains($0) }) {
            throw plain(APIError(.badRequest, "agent \(agent.name) has no input named '\(unknown)'"))
        }
        let nodes = simulatedNodes(agent, additional: extra)
        var values = JSONObject()
        for (i, io) in declared.enumerated() { values["input_\(i)"] = .string(text(of: inputs[io.name] ?? .string(""))) }
        var options = RunOptions()
        options.llmFailures = c.injectedLLMFailures
        options.recorded = ["agent_id": .string(agent.id)]
        let writer = c.writer
        _ = try c.app.engine.start(namespace: c.namespace, pipelineID: agent.id, nodes: nodes, version: agent.currentVersion,
                                   inputs: values, options: options, mode: .sync, onFinish: { run in
            writer.send(answer(run))
        })
        return .later
    }

    /// The run's answer: outputs keyed by the agent's output ids.
    static func answer(_ run: RunRecord) -> Response {
        guard run.status == .completed else {
            let why = run.status == .terminated ? "run terminated" : (run.error ?? "unknown error")
            return MockShiftApp.render(APIError(.internalError, "Failed to run agent: \(why)", runID: run.id))
        }
        return MockShiftApp.json(.ok, JSON.object(["status": "success", "run_id": .string(run.id), "outputs": .object(run.result ?? [:])]))
    }

    /// Inputs keyed by name, and the additional instructions, from a JSON or form body (API-CHAT §3.4).
    static func runInputs(_ c: HandlerContext) throws -> (JSONObject, String) {
        let body = try c.bodyObject()
        var inputs = try body.object("inputs")
        for field in c.request.formFields ?? [] where field.filename != nil {
            inputs[field.name] = .string("[file \(field.filename!): \(field.value.count) bytes, \(field.contentType ?? "application/octet-stream")]")
        }
        return (inputs, try body.string("additional_instructions") ?? "")
    }

    /// `inputs`/`outputs` of a document as (id, name, io_type), in saved order.
    static func ioList(_ value: JSON?) -> [(id: String, name: String, ioType: String)] {
        (value?.objectValue ?? [:]).entries.compactMap { id, io in
            guard let o = io.objectValue, let name = o["name"]?.stringValue else { return nil }
            return (id, name, o["io_type"]?.stringValue ?? "string")
        }
    }

    /// The pipeline a functional run executes: an input node per agent input (`input_K`), and per output an output
    /// node named by the output's id, fed by its own LLM node (`llm_K`: the agent's model, system = its
    /// instructions, prompt = the inputs and the output's name, so each output gets its own deterministic text)
    /// for text outputs, or a fixed placeholder for other io types (SPEC §11).
    static func simulatedNodes(_ agent: AgentRecord, additional: String) -> JSONObject {
        let llm = agent.document["llm_client_key"]?.objectValue ?? [:]
        let inputs = ioList(agent.document["inputs"])
        var system = literal(agent.document["instructions"]?.stringValue ?? "")
        if !additional.isEmpty { system += "\n" + literal(additional) }
        var nodes = JSONObject()
        for i in inputs.indices {
            nodes["input_\(i)"] = ["id": .string("input_\(i)"), "type": "input", "name": .string("input_\(i)"),
                                   "inputs": ["input_type": "string"], "outputs": ["text"]]
        }
        let given = inputs.enumerated().map { i, io in "\(literal(io.name)): {{ input_\(i).text }}" }.joined(separator: "\n")
        for (k, out) in ioList(agent.document["outputs"]).enumerated() {
            let value: JSON
            if ["string", "text"].contains(out.ioType.lowercased()) {
                nodes["llm_\(k)"] = ["id": .string("llm_\(k)"), "type": "llm", "name": .string("llm_\(k)"), "outputs": ["response"],
                                     "inputs": ["provider": llm["provider"] ?? "openai", "model": llm["model_id"] ?? "gpt-4o",
                                                "system": .string(system), "stream": false,
                                                "prompt": .string("Inputs:\n\(given)\nWrite the output '\(literal(out.name))'.")]]
                value = .string("{{ llm_\(k).response }}")
            } else {
                value = .string("[simulated \(literal(out.ioType)) output '\(literal(out.name))']")
            }
            nodes["out_\(k)"] = ["id": .string("out_\(k)"), "type": "output", "name": .string(out.id),
                                 "inputs": ["output_type": "string", "value": value], "outputs": ["value"]]
        }
        return nodes
    }

    /// User text put into a simulated node's inputs, with `{{` broken up: an agent's instructions carry the SDK's
    /// own placeholders (`{{inputs.<id>}}`), which are not templates of the simulated pipeline.
    static func literal(_ text: String) -> String {
        text.replacingOccurrences(of: "{{", with: "{ {").replacingOccurrences(of: "}}", with: "} }")
    }

    static func text(of value: JSON) -> String {
        if case let .string(s) = value { return s }
        return value.encodedString()
    }

    /// Renders errors of `body` in the agent routes' `{"error": …}` format.
    static func plain<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch var error as APIError {
            error.plainBody = true
            throw error
        }
    }

    static func plain(_ error: APIError) -> APIError {
        var error = error
        error.plainBody = true
        return error
    }
}
