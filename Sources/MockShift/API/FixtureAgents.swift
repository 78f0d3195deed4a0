import Crypto

/// Fixture agents (issue 13 item 5, "fixtures may hold agents"): a short form a person can write, expanded once at
/// load to the document `Agent.new` would have saved (API-CHAT §3.2), so `Agent.fetch`, `list` and `run` of the SDK
/// read it as one of their own.
///
/// The short form, under `agents` in a fixture file:
/// ```json
/// {"name": "ticket_summarizer", "agent_type": "functional",
///  "instructions": "Summarise [[inputs.ticket]] in one line.",
///  "llm": {"provider": "openai", "model_id": "gpt-4o"},
///  "inputs": {"ticket": "string"},
///  "outputs": {"summary": {"io_type": "string", "description": "one line"}},
///  "tools": [{"name": "send_email", "type": "email_notification", "approval_config": "requires_approval"}],
///  "memory_config": {"enable_session_memory": true}}
/// ```
/// Only `name` is required. `agent_type` is `functional` (the SDK's default) or `conversational`; `llm` defaults to
/// openai / gpt-4o and may set any field of the SDK's `LlmInfo`; an input or output is an io type or `{io_type,
/// description}`; a tool is `{name, type (a tool type the SDK knows, e.g. email_notification), description?,
/// approval_config? (auto_run, let_agent_decide, requires_approval), inputs? ({name: value or {type, value}}),
/// task_name?}`. A conversational agent gets the SDK's default `memory_config` when it has none.
///
/// The ids the SDK would mint (`input_<24 hex>`, `output_<24 hex>`, `<type>_<24 hex>` for tools) are derived from the
/// agent's and the item's names (``stableID(_:)``), so a restart, a reset and `scripts/seed` (which expands the same
/// way, in Python) give the same ids. As the SDK does for functional agents, `[[inputs.X]]`, `[[outputs.X]]` and
/// `[[tools.X]]` in the instructions and tool descriptions become `{{inputs.<id>}}` and so on; a placeholder naming
/// nothing is a fixture error.
///
/// An entry holding `llm_client_key` is instead the agent's whole document as the SDK saved it (`GET /v1/agent`'s
/// `object`; what `mockshift snapshot` writes): its ids are kept as they are.
extension Fixtures {
    /// One fixture agent: its name and the document stored for it (as ``AgentHandlers/checked(_:)`` gives it).
    struct Agent: Sendable {
        var name: String
        var document: JSONObject

        /// How it is written into `namespace`: over the namespace's agent of the same name (keeping its id, times
        /// and versions), else as a new agent.
        func seed(into namespace: String) -> Store.SeedAgent {
            Store.SeedAgent(name: name) { existing in
                let now = wallClockMicros()
                return AgentRecord(id: existing?.id ?? IDs.make(), namespace: namespace, name: name, document: document,
                                   currentVersion: existing?.currentVersion, createdAt: existing?.createdAt ?? now,
                                   modifiedAt: max(now, (existing?.modifiedAt ?? 0) + 1))
            }
        }
    }

    static let agentKeys: Set<String> = ["name", "agent_type", "instructions", "llm", "inputs", "outputs", "tools", "memory_config"]
    static let toolKeys: Set<String> = ["name", "type", "description", "approval_config", "inputs", "task_name"]
    static let approvalConfigs = ["auto_run", "let_agent_decide", "requires_approval"]

    /// `LlmInfo.model_dump()` of SDK 0.1.15 for openai / gpt-4o: the `llm_client_key` `Agent.new` sends (API-CHAT §3.2).
    static let llmDefaults: JSONObject = [
        "provider": "openai", "model_id": "gpt-4o", "api_key": .null, "fine_tuned_model_id": .null, "endpoint": .null,
        "deployment_id": .null, "stream_response": false, "json_output": true, "show_source": false,
        "show_confidence": false, "enable_tools": true, "base_url": .null, "max_retries": .null, "retry_interval_ms": .null,
    ]

    /// Checks a fixture agent's short form and expands it (see the extension's comment), or takes an agent's whole
    /// document as it stands: an entry with `llm_client_key` is the document the SDK saved (as `GET /v1/agent`
    /// returns it, what `mockshift snapshot` writes), its input, output and tool ids kept, checked and stored as
    /// `POST /v1/agent` would store it. Throws a 400 ``APIError`` naming the field; the loader adds the file and the
    /// agent's place.
    static func agent(_ doc: JSONObject) throws -> Agent {
        if doc["llm_client_key"] != nil {
            if doc["llm"] != nil {
                throw APIError(.badRequest, "llm and llm_client_key exclude each other (the short form, or the SDK's document)")
            }
            let (name, document) = try AgentHandlers.checked(doc)
            return Agent(name: name, document: document)
        }
        if let unknown = doc.keys.sorted().first(where: { !agentKeys.contains($0) }) {
            throw APIError(.badRequest, "unknown key '\(unknown)' (expected \(agentKeys.sorted().joined(separator: ", ")))")
        }
        guard let name = try doc.string("name"), !name.isEmpty else { throw APIError(.badRequest, "name is required") }
        let type = try doc.string("agent_type") ?? "functional"
        guard type == "functional" || type == "conversational" else {
            throw APIError(.badRequest, "agent_type must be functional or conversational")
        }
        var llm = llmDefaults
        for (key, value) in try doc.object("llm") {
            guard llmDefaults[key] != nil else {
                throw APIError(.badRequest, "llm: unknown key '\(key)' (expected \(llmDefaults.keys.sorted().joined(separator: ", ")))")
            }
            llm[key] = value
        }
        for key in ["provider", "model_id"] where (llm[key]?.stringValue ?? "").isEmpty {
            throw APIError(.badRequest, "llm.\(key) must be a non-empty string")
        }
        let inputs = try ioConfigs(doc, "inputs", agent: name)
        let outputs = try ioConfigs(doc, "outputs", agent: name)
        var tools = try self.tools(doc, agent: name)
        var instructions = try doc.string("instructions") ?? ""
        if type == "functional" {
            let ids = Placeholders(inputs: inputs.map { ($0.name, $0.id) }, outputs: outputs.map { ($0.name, $0.id) },
                                   tools: tools.map { ($0.name, $0.id) })
            instructions = try ids.resolve(instructions, in: "instructions")
            for i in tools.indices where !tools[i].description.isEmpty {
                tools[i].description = try ids.resolve(tools[i].description, in: "tools[\(i)].description")
            }
        }
        var body: JSONObject = [
            "name": .string(name), "llm_client_key": .object(llm), "agent_type": .string(type),
            "tools": .object(JSONObject(tools.map { ($0.id, $0.json) })), "instructions": .string(instructions),
            "inputs": .object(JSONObject(inputs.map { ($0.id, $0.json) })),
            "outputs": .object(JSONObject(outputs.map { ($0.id, $0.json) })),
        ]
        if doc["memory_config"] != nil {
            body["memory_config"] = .object(try doc.object("memory_config"))
        } else if type == "conversational" {
            body["memory_config"] = ["enable_session_memory": true, "enable_global_memory": false]
        }
        // What `POST /agent` would make of it: the same checks, the same stored document.
        let (_, document) = try AgentHandlers.checked(body)
        return Agent(name: name, document: document)
    }

    /// An input or output of a fixture agent, with the id the SDK would have minted.
    struct IO {
        var id: String
        var name: String
        var ioType: String
        var description: String
        var json: JSON { ["name": .string(name), "io_type": .string(ioType), "description": .string(description)] }
    }

    /// `inputs` or `outputs`: `{name: io_type}` or `{name: {io_type, description?}}`, in the file's order.
    static func ioConfigs(_ doc: JSONObject, _ key: String, agent: String) throws -> [IO] {
        let prefix = key == "inputs" ? "input" : "output"
        return try doc.object(key).map { name, value in
            guard !name.isEmpty else { throw APIError(.badRequest, "\(key): a name must not be empty") }
            var ioType: String?, description = ""
            switch value {
            case let .string(text): ioType = text
            case let .object(o):
                if let unknown = o.keys.sorted().first(where: { !["io_type", "description"].contains($0) }) {
                    throw APIError(.badRequest, "\(key).\(name): unknown key '\(unknown)' (expected io_type, description)")
                }
                ioType = try o.string("io_type") ?? "string"
                description = try o.string("description") ?? ""
            default: break
            }
            guard let ioType, !ioType.isEmpty else {
                throw APIError(.badRequest, "\(key).\(name) must be an io type (e.g. \"string\") or {\"io_type\", \"description\"}")
            }
            return IO(id: "\(prefix)_" + stableID([agent, prefix, name]), name: name, ioType: ioType, description: description)
        }
    }

    /// A tool of a fixture agent, as `Agent._serialize_tools` of the SDK writes it (API-CHAT §3.2).
    struct Tool {
        var id: String
        var name: String
        var description: String
        var approvalConfig: String
        var type: String
        var inputs: JSONObject
        var taskName: String
        var json: JSON {
            ["id": .string(id), "name": .string(name), "description": .string(description),
             "approval_config": .string(approvalConfig),
             "value": ["node_type": .string(type), "inputs": .object(inputs), "task_name": .string(taskName)]]
        }
    }

    static func tools(_ doc: JSONObject, agent: String) throws -> [Tool] {
        var tools: [Tool] = []
        for (i, item) in (try doc.list("tools") ?? []).enumerated() {
            let field = "tools[\(i)]"
            guard let t = item.objectValue else { throw APIError(.badRequest, "\(field) must be an object") }
            if let unknown = t.keys.sorted().first(where: { !toolKeys.contains($0) }) {
                throw APIError(.badRequest, "\(field): unknown key '\(unknown)' (expected \(toolKeys.sorted().joined(separator: ", ")))")
            }
            guard let type = try t.string("type"), !type.isEmpty,
                  type.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == 95 }) else {
                throw APIError(.badRequest, "\(field).type must be a tool type of the SDK (lowercase, digits and _), e.g. email_notification")
            }
            let name = try t.string("name") ?? type
            guard !name.isEmpty else { throw APIError(.badRequest, "\(field).name must not be empty") }
            if tools.contains(where: { $0.name == name }) {
                throw APIError(.badRequest, "\(field): a tool named '\(name)' is defined twice (the model picks tools by name)")
            }
            let approval = try t.string("approval_config") ?? "auto_run"
            guard approvalConfigs.contains(approval) else {
                throw APIError(.badRequest, "\(field).approval_config must be \(approvalConfigs.joined(separator: ", "))")
            }
            var inputs = JSONObject()
            for (inputName, value) in try t.object("inputs") {
                // `{type, value}` as the SDK writes an input; anything else is a static value.
                if let o = value.objectValue, o["type"] != nil { inputs[inputName] = value } else {
                    inputs[inputName] = ["type": "static", "value": value]
                }
            }
            tools.append(Tool(id: "\(type)_" + stableID([agent, "tool", name]), name: name,
                              description: try t.string("description") ?? "", approvalConfig: approval, type: type,
                              inputs: inputs, taskName: try t.string("task_name") ?? type))
        }
        return tools
    }

    /// 24 lowercase hex characters (the length of the ObjectIds the SDK mints) from SHA-256 of `parts`: the same
    /// fixture gives the same id in every namespace, after every restart, and from `scripts/seed`.
    static func stableID(_ parts: [String]) -> String {
        let digest = SHA256.hash(data: Array((["mockshift-fixture"] + parts).joined(separator: "\u{0}").utf8))
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in digest.prefix(12) { hex += [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
        return String(decoding: hex, as: UTF8.self)
    }

    /// The SDK's placeholder rewrite for functional agents (`resolve_placeholders`, agent/template_refs.py):
    /// `[[inputs.X]]` → `{{inputs.<id>}}`, likewise outputs and tools; no namespace, or a name that is not there,
    /// is an error (the SDK raises `TemplateReferenceError`).
    struct Placeholders {
        let names: [String: [(name: String, id: String)]]

        init(inputs: [(String, String)], outputs: [(String, String)], tools: [(String, String)]) {
            names = ["inputs": inputs.map { ($0.0, $0.1) }, "outputs": outputs.map { ($0.0, $0.1) },
                     "tools": tools.map { ($0.0, $0.1) }]
        }

        func resolve(_ text: String, in field: String) throws -> String {
            let pattern = #/\[\[\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\]\]/#
            var out = "", rest = text[...]
            while let match = rest.firstMatch(of: pattern) {
                out += rest[..<match.range.lowerBound]
                let ident = String(match.output.1)
                let (space, dot, key) = ident.firstIndex(of: ".").map {
                    (String(ident[..<$0]), true, String(ident[ident.index(after: $0)...]))
                } ?? (ident, false, ident)
                guard dot, let known = names[space] else {
                    throw APIError(.badRequest, "\(field): placeholder [[\(ident)]] needs inputs., outputs. or tools. before the name")
                }
                guard let id = known.first(where: { $0.name == key || $0.id == key })?.id else {
                    let listed = known.map(\.name).joined(separator: ", ")
                    throw APIError(.badRequest, "\(field): [[\(ident)]] names no \(space.dropLast()) of the agent (\(listed.isEmpty ? "it has none" : listed))")
                }
                out += "{{\(space).\(id)}}"
                rest = rest[match.range.upperBound...]
            }
            return out + rest
        }
    }
}
