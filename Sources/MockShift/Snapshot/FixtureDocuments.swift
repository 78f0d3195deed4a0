/// Turns objects as the API answers them (`GET /v1/pipeline`, `/v1/chatbot`, `/v1/agent`: the `object`) into the
/// fixture documents `serve --fixtures` and `scripts/seed` load (README "Fixtures"), with secrets replaced
/// (``SecretRedactor``). Used by `mockshift snapshot` and by the recorder of `serve --record`.
///
/// - A pipeline: `{"name", "nodes", "canvas_metadata", "description"?, "folder_id"?, "versions"?}`, `versions`
///   listing its deployed snapshots (`{"version", "nodes"?, "canvas_metadata"?}`, `nodes` and canvas only where
///   they differ from the working state), oldest first. Keys the API adds (ids, dates, the recomputed `inputs` and
///   `outputs`, `currentVersion`) are left out.
/// - A chatbot: `{"chatbots": [{"name", "pipeline": PIPELINE_NAME | {"name", "version"}, "input", "output",
///   "description", "deployed", settings objects that are not empty}]}`: its pipeline named by name.
/// - An agent: `{"agents": [DOCUMENT]}`, the document the SDK saved (`llm_client_key`, `tools`, `inputs` and
///   `outputs` with the ids the SDK minted, …) without the keys the API adds.
public enum FixtureDocuments {
    /// A secret replaced in one object: the node it was in (pipelines) and the field's path inside the node's
    /// `inputs`, or inside the object (chatbots, agents).
    public struct Redaction: Sendable, Hashable {
        public var node: String?
        public var field: String
    }

    /// Keys the API adds to an agent's document (ids, dates, owners, versions): not part of what the SDK saved.
    static let agentMetadataKeys: Set<String> = [
        "_id", "id", "object_id", "mainBranch", "created_at", "updated_at", "createdAt", "updatedAt", "createdDate",
        "modifiedDate", "currentVersion", "versions", "version", "orgID", "userID", "org_id", "user_id", "owner_id",
        "organization_id", "creator_id", "status",
    ]

    /// The id in `value`: a string, or Mongo's extended form `{"$oid": …}` (which the SDK normalises in lists).
    public static func idString(_ value: JSON?) -> String? {
        switch value {
        case let .string(s)? where !s.isEmpty: s
        case let .object(o)?: o["$oid"]?.stringValue
        default: nil
        }
    }

    /// An object's id as the SDK reads it: `_id`, else `id`, else `object_id`.
    public static func objectID(_ object: JSONObject) -> String? {
        idString(object["_id"]) ?? idString(object["id"]) ?? idString(object["object_id"])
    }

    /// A pipeline's fixture document. `versions`: each deployed snapshot fetched (`GET /pipeline?id=…&version=V`'s
    /// `object`), by version. Throws ``UpstreamError/badBody(_:)`` for an object without `name` or with `nodes`
    /// that are not an object.
    public static func pipeline(_ object: JSONObject, versions: [String: JSONObject], folderID: String?) throws
        -> (document: JSONObject, redactions: [Redaction]) {
        guard let name = object["name"]?.stringValue, !name.isEmpty else { throw UpstreamError.badBody("the pipeline has no name") }
        var redactions: [Redaction] = []
        let nodes = try redactedNodes(object["nodes"], redactions: &redactions)
        let canvas = object["canvas_metadata"]?.objectValue.map(JSON.object) ?? .object([:])
        var document: JSONObject = ["name": .string(name), "nodes": .object(nodes), "canvas_metadata": canvas]
        if let description = object["description"]?.stringValue { document["description"] = .string(description) }
        if let folder = folderID ?? idString(object["folder_id"]) ?? idString(object["folderId"]) {
            document["folder_id"] = .string(folder)
        }
        var listed: [JSON] = []
        let numbers = versions.keys.filter(SemanticVersion.isValid).sorted {
            SemanticVersion.parts($0)!.lexicographicallyPrecedes(SemanticVersion.parts($1)!)
        }
        for number in numbers {
            let snapshot = versions[number]!
            var entry: JSONObject = ["version": .string(number)]
            let snapshotNodes = try redactedNodes(snapshot["nodes"], redactions: &redactions)
            if snapshotNodes != nodes { entry["nodes"] = .object(snapshotNodes) }
            let snapshotCanvas = snapshot["canvas_metadata"]?.objectValue.map(JSON.object) ?? canvas
            if snapshotCanvas != canvas { entry["canvas_metadata"] = snapshotCanvas }
            listed.append(.object(entry))
        }
        if !listed.isEmpty { document["versions"] = .array(listed) }
        return (document, Array(Set(redactions)).sorted { ($0.node ?? "", $0.field) < ($1.node ?? "", $1.field) })
    }

    /// `nodes` (an object of node objects keyed by id) with each node's `inputs` redacted.
    static func redactedNodes(_ value: JSON?, redactions: inout [Redaction]) throws -> JSONObject {
        guard let value, value != .null else { return [:] }
        guard let nodes = value.objectValue else { throw UpstreamError.badBody("the pipeline's nodes are not an object") }
        var out = JSONObject()
        for (id, node) in nodes {
            guard var object = node.objectValue, let inputs = object["inputs"] else {
                out[id] = node
                continue
            }
            let (cleaned, findings) = SecretRedactor.redact(inputs)
            redactions += findings.map { Redaction(node: id, field: $0.path) }
            object["inputs"] = cleaned
            out[id] = .object(object)
        }
        return out
    }

    /// The pipeline a chatbot links, as the SDK reads it (`_pipeline_id_from_obj`, API-CHAT §1.3): `pipeline` as an
    /// object (`object_id`, else `id`) or a string, else `object` as an object; and the version it pins (nil for
    /// `latest` or none), `MAJOR.MINOR.PATCH` or `{major, minor, patch}`.
    public static func chatbotPipeline(_ object: JSONObject) -> (id: String?, version: String?) {
        var link: JSONObject?
        var id: String?
        switch object["pipeline"] {
        case let .object(o)?: link = o
        case let .string(s)? where !s.isEmpty: id = s
        default: link = object["object"]?.objectValue
        }
        if let link { id = idString(link["object_id"]) ?? idString(link["id"]) }
        var version: String?
        switch link?["version"] {
        case let .string(v)? where SemanticVersion.isValid(v): version = v
        case let .object(parts)?:
            let numbers = ["major", "minor", "patch"].map { parts[$0]?.intValue }
            if numbers.allSatisfy({ $0 != nil && $0! >= 0 }) { version = numbers.map { String($0!) }.joined(separator: ".") }
        default: break
        }
        return (id, version)
    }

    /// A chatbot's fixture document (the entry under `chatbots`), naming its pipeline `pipelineName`.
    public static func chatbot(_ object: JSONObject, pipelineName: String, version: String?) throws
        -> (document: JSONObject, redactions: [Redaction]) {
        guard let name = object["name"]?.stringValue, !name.isEmpty else { throw UpstreamError.badBody("the chatbot has no name") }
        var document: JSONObject = [
            "name": .string(name),
            "pipeline": version.map { ["name": .string(pipelineName), "version": .string($0)] } ?? .string(pipelineName),
            "input": .string(object["input"]?.stringValue ?? ""), "output": .string(object["output"]?.stringValue ?? ""),
            "description": .string(object["description"]?.stringValue ?? ""),
            "deployed": .bool(object["deployed"]?.boolValue ?? false),
        ]
        var redactions: [Redaction] = []
        // The SDK reads either spelling (API-CHAT §1.3); the fixtures take the API's.
        for (key, camel) in [("deployment_options", "deploymentOptions"), ("access_config", "accessConfig"),
                             ("twilio_config", "twilioConfig"), ("slack_config", "slackConfig")] {
            guard let settings = (object[key] ?? object[camel])?.objectValue, !settings.isEmpty else { continue }
            let (cleaned, findings) = SecretRedactor.redact(.object(settings), at: key, key: key)
            redactions += findings.map { Redaction(node: nil, field: $0.path) }
            document[key] = cleaned
        }
        return (document, redactions)
    }

    /// An agent's fixture document (the entry under `agents`): the object without ``agentMetadataKeys``, secrets
    /// replaced anywhere in it (its `llm_client_key.api_key`, tool inputs, …).
    public static func agent(_ object: JSONObject) throws -> (document: JSONObject, redactions: [Redaction]) {
        guard let name = object["name"]?.stringValue, !name.isEmpty else { throw UpstreamError.badBody("the agent has no name") }
        guard object["llm_client_key"]?.objectValue != nil else { throw UpstreamError.badBody("the agent has no llm_client_key") }
        var document = JSONObject()
        for (key, value) in object where !agentMetadataKeys.contains(key) { document[key] = value }
        var redactions: [Redaction] = []
        var cleaned = JSONObject()
        for (key, value) in document {
            let (value, findings) = SecretRedactor.redact(value, at: key, key: key)
            cleaned[key] = value
            redactions += findings.map { Redaction(node: nil, field: $0.path) }
        }
        return (cleaned, redactions)
    }
}
