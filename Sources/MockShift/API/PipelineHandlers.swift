import Foundation
import HTTPTypes

/// Pipeline CRUD handlers (API.md §3, SPEC §2 and §8).
enum PipelineHandlers {
    /// `POST /pipeline` (`Pipeline.new`): stores a new pipeline, answers `{"status":"success","id":ID}`.
    static func create(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let name = try body.string("name"), !name.isEmpty else {
            throw APIError(.badRequest, "Pipeline name is required")
        }
        let nodes = try checkedNodes(body["nodes"] ?? .object([:]))
        let id = IDs.make()
        let now = wallClockMicros()
        let record = PipelineRecord(
            id: id, namespace: c.namespace, name: name, mainBranch: id, folderID: try body.string("folder_id"),
            description: try body.string("description"), nodes: nodes,
            canvasMetadata: .object(try body.object("canvas_metadata")), createdAt: now, modifiedAt: now, currentVersion: nil)
        try c.app.store.savePipeline(record)
        return .json(.ok, ["status": "success", "id": .string(id)])
    }

    /// `GET /pipeline?id=…|name=…[&version=…]` (`Pipeline.fetch`): `{"status":"success","object":{…}}`, 404 when
    /// missing. With a name, the most recently modified pipeline of that name wins (API.md §3.2).
    static func fetch(_ c: HandlerContext) throws -> Reply {
        let id = c.request.queryValue("id"), name = c.request.queryValue("name")
        var pipeline: PipelineRecord?
        if let id, !id.isEmpty {
            pipeline = try c.app.store.pipeline(namespace: c.namespace, id: id)
            if let name, !name.isEmpty, pipeline?.name != name { pipeline = nil }
        } else if let name, !name.isEmpty {
            pipeline = try c.app.store.pipeline(namespace: c.namespace, name: name)
        } else {
            throw APIError(.badRequest, "Pipeline ID or name is required")
        }
        guard var pipeline else { throw APIError(.notFound, "Pipeline not found") }
        if let version = c.request.queryValue("version"), !version.isEmpty {
            let snapshot = try deployedVersion(c, pipeline, version)
            pipeline.nodes = snapshot.nodes
            pipeline.canvasMetadata = snapshot.canvasMetadata
        }
        var object = render(pipeline).objectValue ?? [:]
        let shares = try c.app.store.shares(pipelineID: pipeline.id)
        if !shares.isEmpty { object["shared_with"] = .array(shares.map(JSON.object)) }
        return .json(.ok, ["status": "success", "object": .object(object)])
    }

    /// `POST /update/pipeline/{id}` (`save`, `move_to_folder`): a partial update (keys absent stay as they
    /// are). `deploy: true` snapshots a version, bumped as `bump` says (SPEC §8). Save-only keys such as
    /// `deploy` and `branch_id` are never stored (API.md §3.2 "Mock gotcha").
    static func update(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        var deployed: String?
        // Read, change and write in one transaction: concurrent saves of one pipeline lose nothing, and two
        // deploys never take the same version (Store.updatePipeline).
        let saved = try c.app.store.updatePipeline(namespace: c.namespace, id: c.parameter("id")) { pipeline in
            if let nodes = body["nodes"] { pipeline.nodes = try checkedNodes(nodes) }
            if body["canvas_metadata"] != nil { pipeline.canvasMetadata = .object(try body.object("canvas_metadata")) }
            if body["name"] != nil {
                guard let s = try body.string("name"), !s.isEmpty else { throw APIError(.badRequest, "name must be a non-empty string") }
                pipeline.name = s
            }
            if body["folder_id"] != nil { pipeline.folderID = try body.string("folder_id") }
            if body["description"] != nil { pipeline.description = try body.string("description") }
            let deploy = try body.bool("deploy")
            pipeline.modifiedAt = max(wallClockMicros(), pipeline.modifiedAt + 1)
            guard deploy else { return nil }
            let bump = try body.string("bump")
            guard bump == nil || ["major", "minor", "patch"].contains(bump!) else {
                throw APIError(.badRequest, "bump must be one of major, minor, patch")
            }
            let version = SemanticVersion.next(after: pipeline.currentVersion, bump: bump)
            pipeline.currentVersion = version
            deployed = version
            return PipelineVersion(
                pipelineID: pipeline.id, version: version, nodes: pipeline.nodes, canvasMetadata: pipeline.canvasMetadata,
                description: body["description"]?.stringValue, createdAt: pipeline.modifiedAt)
        }
        guard let saved else { throw APIError(.notFound, "Pipeline not found") }
        var answer: JSONObject = ["status": "success", "id": .string(saved.id)]
        if let deployed { answer["version"] = .string(deployed) }
        return .json(.ok, .object(answer))
    }

    /// `GET /pipelines` (`Pipeline.list`): `objects` when `verbose=true`, else `object_ids` (API.md §3.4).
    static func list(_ c: HandlerContext) throws -> Reply {
        let offset = try intQuery(c, "offset") ?? 0
        let limit = try intQuery(c, "limit") ?? 1000
        guard offset >= 0, limit >= 0 else { throw APIError(.badRequest, "offset and limit must not be negative") }
        let pipelines = try c.app.store.pipelineSummaries(namespace: c.namespace, folderID: c.request.queryValue("folder_id"),
                                                          offset: offset, limit: min(limit, 10_000))
        if c.request.queryValue("verbose") == "true" {
            return .json(.ok, ["status": "success", "objects": .array(pipelines.map(summary))])
        }
        return .json(.ok, ["status": "success", "object_ids": .array(pipelines.map { .string($0.id) })])
    }

    /// `DELETE /pipeline/{id}`: terminates the pipeline's live runs (SPEC §3), then deletes it.
    static func delete(_ c: HandlerContext) throws -> Reply {
        let id = c.parameter("id")
        guard try c.app.store.pipeline(namespace: c.namespace, id: id) != nil else {
            throw APIError(.notFound, "Pipeline not found")
        }
        // Stored first: when the database cannot be written, the 503 leaves the live runs alone too. Not while a
        // chatbot turn of the key is being set up on it (``ChatTurns/exclusive``).
        try c.app.chatTurns.exclusive(c.namespace) {
            _ = try c.app.store.deletePipeline(namespace: c.namespace, id: id)
            c.app.engine.terminateRuns(namespace: c.namespace, pipelineID: id)
        }
        return .json(.ok, ["status": "success"])
    }

    /// `POST /pipeline/{id}/duplicate`: a copy of the working state under a new id (API.md §3.6).
    static func duplicate(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard var copy = try c.app.store.pipeline(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        copy.id = IDs.make()
        copy.mainBranch = copy.id
        copy.name = try body.string("name") ?? "\(copy.name) (copy)"
        if body["description"] != nil { copy.description = try body.string("description") }
        if body["folder_id"] != nil { copy.folderID = try body.string("folder_id") }
        copy.currentVersion = nil
        copy.createdAt = wallClockMicros()
        copy.modifiedAt = copy.createdAt
        try c.app.store.savePipeline(copy)
        return .json(.ok, ["status": "success", "id": .string(copy.id)])
    }

    /// `POST /pipeline/{id}/revert` `{"version": v}`: copies snapshot `v` into the working state (SPEC §8).
    static func revert(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        guard let pipeline = try c.app.store.pipeline(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        guard let version = try body.string("version") else { throw APIError(.badRequest, "version is required") }
        let snapshot = try deployedVersion(c, pipeline, version)
        let saved = try c.app.store.updatePipeline(namespace: c.namespace, id: pipeline.id) { pipeline in
            pipeline.nodes = snapshot.nodes
            pipeline.canvasMetadata = snapshot.canvasMetadata
            pipeline.modifiedAt = max(wallClockMicros(), pipeline.modifiedAt + 1)
            return nil
        }
        guard saved != nil else { throw APIError(.notFound, "Pipeline not found") }
        return .json(.ok, ["status": "success"])
    }

    /// `POST /pipeline/{id}/share` `{"role":"viewer"|"editor", user_id?, org_id?, name?}` (API.md §3.8): recorded
    /// (shown as `shared_with` by fetch) and answered `{"status":"success"}`.
    static func share(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        let pipeline = try existing(c)
        guard let role = try body.string("role"), ["viewer", "editor"].contains(role) else {
            throw APIError(.badRequest, "role must be viewer or editor")
        }
        var share: JSONObject = ["role": .string(role)]
        for key in ["user_id", "org_id", "name"] { if let v = try body.string(key) { share[key] = .string(v) } }
        try c.app.store.addShare(pipelineID: pipeline.id, share)
        return .json(.ok, ["status": "success"])
    }

    /// `POST /pipeline/{id}/unshare` `{user_id?, org_id?}`: removes the matching recorded shares.
    static func unshare(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        let pipeline = try existing(c)
        let user = try body.string("user_id"), org = try body.string("org_id")
        let kept = try c.app.store.shares(pipelineID: pipeline.id).filter { share in
            !((user != nil && share["user_id"]?.stringValue == user) || (org != nil && share["org_id"]?.stringValue == org))
        }
        try c.app.store.replaceShares(pipelineID: pipeline.id, with: kept)
        return .json(.ok, ["status": "success"])
    }

    /// `POST /pipeline/{id}/remove-node` `{node_id?, node_name?}` (API.md §3.8): removes the node, the canvas
    /// edges that touch it and the references to it in other nodes (templates emptied, `dependencies` entries
    /// dropped); answers `{"status":"success","node_id":…}`.
    static func removeNode(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        _ = try existing(c)
        let byID = try body.string("node_id"), byName = try body.string("node_name")
        guard byID != nil || byName != nil else { throw APIError(.badRequest, "node_id or node_name is required") }
        var removed = ""
        let saved = try c.app.store.updatePipeline(namespace: c.namespace, id: c.parameter("id")) { pipeline in
            removed = try removeNode(from: &pipeline, byID: byID, byName: byName)
            return nil
        }
        guard saved != nil else { throw APIError(.notFound, "Pipeline not found") }
        return .json(.ok, ["status": "success", "node_id": .string(removed)])
    }

    /// Removes the node named by id or name from `pipeline` with its edges and references; returns its id.
    static func removeNode(from pipeline: inout PipelineRecord, byID: String?, byName: String?) throws -> String {
        guard let id = pipeline.nodes.keys.first(where: { key in
            key == byID || (byName != nil && pipeline.nodes[key]?["name"]?.stringValue == byName)
        }) else { throw APIError(.notFound, "Node \(byID ?? byName ?? "") not found") }
        pipeline.nodes[id] = nil
        let mentions = try Regex("\\{\\{\\s*\(NSRegularExpression.escapedPattern(for: id))\\.[A-Za-z0-9_.\\-]+\\s*\\}\\}")
        for key in pipeline.nodes.keys {
            guard var node = pipeline.nodes[key]?.objectValue, let inputs = node["inputs"]?.objectValue else { continue }
            var cleaned = JSONObject()
            for (name, value) in inputs { cleaned[name] = scrub(value, mentions, dropWhole: name == "dependencies") }
            node["inputs"] = .object(cleaned)
            pipeline.nodes[key] = .object(node)
        }
        if var canvas = pipeline.canvasMetadata.objectValue {
            if let edges = canvas["edges"]?.arrayValue {
                canvas["edges"] = .array(edges.filter { $0["source"]?.stringValue != id && $0["target"]?.stringValue != id })
            }
            if var positions = canvas["nodes"]?.objectValue {
                positions[id] = nil
                canvas["nodes"] = .object(positions)
            }
            pipeline.canvasMetadata = .object(canvas)
        }
        pipeline.modifiedAt = max(wallClockMicros(), pipeline.modifiedAt + 1)
        return id
    }

    /// `value` without mentions of a removed node: strings lose the templates; in a `dependencies` list, entries
    /// that mention it go.
    static func scrub(_ value: JSON, _ mentions: Regex<AnyRegexOutput>, dropWhole: Bool) -> JSON {
        switch value {
        case let .string(s): return .string(s.replacing(mentions, with: ""))
        case let .array(items):
            if dropWhole { return .array(items.filter { !($0.stringValue?.contains(mentions) ?? false) }) }
            return .array(items.map { scrub($0, mentions, dropWhole: false) })
        case let .object(o):
            var out = JSONObject()
            for (k, v) in o { out[k] = scrub(v, mentions, dropWhole: false) }
            return .object(out)
        default: return value
        }
    }

    static func existing(_ c: HandlerContext) throws -> PipelineRecord {
        guard let pipeline = try c.app.store.pipeline(namespace: c.namespace, id: c.parameter("id")) else {
            throw APIError(.notFound, "Pipeline not found")
        }
        return pipeline
    }

    // MARK: Helpers

    /// The deployed snapshot `version` ("latest" = newest) of `pipeline`. Throws 400 for a malformed version,
    /// 404 for an unknown one.
    static func deployedVersion(_ c: HandlerContext, _ pipeline: PipelineRecord, _ version: String) throws -> PipelineVersion {
        try deployedVersion(c.app, pipeline, version)
    }

    /// ``deployedVersion(_:_:_:)`` off a request (a session turn).
    static func deployedVersion(_ app: MockShiftApp, _ pipeline: PipelineRecord, _ version: String) throws -> PipelineVersion {
        let wanted = version == "latest" ? pipeline.currentVersion : version
        guard version == "latest" || SemanticVersion.isValid(version) else {
            throw APIError(.badRequest, "Invalid pipeline version: invalid format")
        }
        guard let wanted, let snapshot = try app.store.version(pipelineID: pipeline.id, version: wanted) else {
            throw APIError(.notFound, "Pipeline version \(version) not found")
        }
        return snapshot
    }

    /// Checks a `nodes` value: an object of node objects keyed by their id, each with a string `type` (the
    /// SDK's `from_json` needs it) and, when present, an object of `inputs` and a list of `outputs`. Fills a
    /// missing node `id` from its key.
    static func checkedNodes(_ value: JSON) throws -> JSONObject {
        guard let nodes = value.objectValue else { throw APIError(.badRequest, "nodes must be an object keyed by node id") }
        var checked = JSONObject()
        for (key, node) in nodes {
            guard var object = node.objectValue else { throw APIError(.badRequest, "node '\(key)' must be an object") }
            guard object["type"]?.stringValue != nil else { throw APIError(.badRequest, "node '\(key)' has no type") }
            switch object["id"] {
            case nil, .null?: object["id"] = .string(key)
            case let .string(id)? where id == key: break
            default: throw APIError(.badRequest, "node '\(key)' must have id '\(key)' (nodes are keyed by id)")
            }
            if let name = object["name"], name != .null, name.stringValue == nil {
                throw APIError(.badRequest, "node '\(key)': name must be a string")
            }
            if let inputs = object["inputs"], inputs != .null, inputs.objectValue == nil {
                throw APIError(.badRequest, "node '\(key)': inputs must be an object")
            }
            if let outputs = object["outputs"], outputs != .null, outputs.arrayValue == nil {
                throw APIError(.badRequest, "node '\(key)': outputs must be a list")
            }
            checked[key] = .object(object)
        }
        return checked
    }

    /// The object `fetch` returns: only keys the SDK consumes or ignores (API.md §3.2), `inputs` and `outputs`
    /// recomputed from the input and output nodes.
    static func render(_ p: PipelineRecord) -> JSON {
        var inputs = JSONObject(), outputs = JSONObject()
        for (_, value) in p.nodes {
            guard let node = value.objectValue, let name = node["name"]?.stringValue ?? node["id"]?.stringValue else { continue }
            let nodeInputs = node["inputs"]?.objectValue ?? [:]
            switch node["type"]?.stringValue {
            case "input":
                var info: JSONObject = ["io_type": nodeInputs["input_type"] ?? "string",
                                        "description": nodeInputs["description"] ?? ""]
                if let d = nodeInputs["default_value"], d != .null { info["default_value"] = d }
                inputs[name] = .object(info)
            case "output":
                outputs[name] = ["io_type": nodeInputs["output_type"] ?? "string", "description": nodeInputs["description"] ?? ""]
            default: break
            }
        }
        var object: JSONObject = [
            "_id": .string(p.id), "id": .string(p.id), "name": .string(p.name), "mainBranch": .string(p.mainBranch),
            "nodes": .object(p.nodes), "canvas_metadata": p.canvasMetadata, "inputs": .object(inputs), "outputs": .object(outputs),
            "createdDate": .string(iso8601(micros: p.createdAt)), "modifiedDate": .string(iso8601(micros: p.modifiedAt)),
        ]
        if let d = p.description { object["description"] = .string(d) }
        if let v = p.currentVersion { object["currentVersion"] = .string(v) }
        return .object(object)
    }

    static func summary(_ p: PipelineSummary) -> JSON {
        ["_id": .string(p.id), "id": .string(p.id), "name": .string(p.name), "mainBranch": .string(p.mainBranch),
         "createdDate": .string(iso8601(micros: p.createdAt)), "modifiedDate": .string(iso8601(micros: p.modifiedAt))]
    }

    static func intQuery(_ c: HandlerContext, _ name: String) throws -> Int? {
        guard let raw = c.request.queryValue(name), !raw.isEmpty else { return nil }
        guard let n = Int(raw) else { throw APIError(.badRequest, "\(name) must be an integer") }
        return n
    }
}

/// Deploy version numbers (SPEC §8).
enum SemanticVersion {
    /// `MAJOR.MINOR.PATCH` with decimal parts.
    static func isValid(_ s: String) -> Bool { parts(s) != nil }

    static func parts(_ s: String) -> [Int]? {
        let p = s.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard p.count == 3, p.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        return p.map { $0! }
    }

    /// The version after `current`: the first deploy is 1.0.0 (0.1.0 / 0.0.1 for bump minor / patch); later
    /// ones bump the named part (patch when absent) and reset the parts below it.
    static func next(after current: String?, bump: String?) -> String {
        guard let current, var p = parts(current) else {
            switch bump {
            case "minor": return "0.1.0"
            case "patch": return "0.0.1"
            default: return "1.0.0"
            }
        }
        switch bump ?? "patch" {
        case "major": p = [p[0] + 1, 0, 0]
        case "minor": p = [p[0], p[1] + 1, 0]
        default: p[2] += 1
        }
        return p.map(String.init).joined(separator: ".")
    }
}
