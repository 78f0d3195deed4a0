import Foundation

/// Loads fixture files (`serve --fixtures DIR`, SPEC §1 and §7) into the namespace `default`, through the same
/// checks as the API: every `*.json` file of the folder, in name order. A file holds an object with any of
/// `pipelines` (pipeline documents as the SDK sends them, plus `name` and optionally `deploy`), `llm`
/// (scripted answers, as `POST /_mock/llm` takes) and `faults` (as `POST /_mock/faults` takes), or is one
/// pipeline document itself (an object with `name` and `nodes`). A pipeline whose name already exists is
/// updated in place, so loading the same folder again (a restart) does not duplicate it.
public enum Fixtures {
    /// A fixture that cannot be loaded: the file and the field, then what is wrong.
    public struct LoadError: Error, CustomStringConvertible {
        public let file: String
        public let field: String
        public let message: String
        public var description: String { "fixture \(file): \(field): \(message)" }
    }

    /// What was loaded.
    public struct Summary: Sendable {
        public var files = 0, pipelines = 0, scripts = 0, faults = 0
    }

    public static let namespace = "default"

    /// Loads every fixture file in `directory`. Throws ``LoadError`` naming the file and field at the first
    /// problem (files before it stay loaded).
    public static func load(directory: String, into app: MockShiftApp) throws -> Summary {
        let folder = URL(fileURLWithPath: directory)
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw LoadError(file: directory, field: "(folder)", message: "cannot read the folder: \(error.localizedDescription)")
        }
        var summary = Summary()
        for name in names {
            let path = folder.appendingPathComponent(name).path
            guard let data = FileManager.default.contents(atPath: path) else {
                throw LoadError(file: path, field: "(file)", message: "cannot read the file")
            }
            guard let object = (try? JSON.parse(Array(data)))?.objectValue else {
                throw LoadError(file: path, field: "(file)", message: "not a JSON object")
            }
            try load(object, file: path, into: app, summary: &summary)
            summary.files += 1
        }
        return summary
    }

    static func load(_ object: JSONObject, file: String, into app: MockShiftApp, summary: inout Summary) throws {
        func each(_ key: String, _ body: (Int, JSONObject) throws -> Void) throws {
            guard let value = object[key] else { return }
            guard let items = value.arrayValue else { throw LoadError(file: file, field: key, message: "must be a list") }
            for (i, item) in items.enumerated() {
                guard let entry = item.objectValue else { throw LoadError(file: file, field: "\(key)[\(i)]", message: "must be an object") }
                do { try body(i, entry) } catch let error as APIError {
                    throw LoadError(file: file, field: "\(key)[\(i)]", message: error.message)
                }
            }
        }
        if object["nodes"] != nil && object["pipelines"] == nil {
            do { try savePipeline(object, app: app) } catch let error as APIError {
                throw LoadError(file: file, field: "(pipeline)", message: error.message)
            }
            summary.pipelines += 1
            return
        }
        let known: Set<String> = ["pipelines", "llm", "faults"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw LoadError(file: file, field: unknown, message: "unknown key (expected pipelines, llm, faults, or a pipeline with nodes)")
        }
        try each("pipelines") { _, entry in try savePipeline(entry, app: app); summary.pipelines += 1 }
        try each("llm") { _, entry in try app.llmScripts.add(namespace: namespace, entry); summary.scripts += 1 }
        try each("faults") { _, entry in _ = try app.faults.add(namespace: namespace, entry); summary.faults += 1 }
    }

    /// Creates the pipeline, or updates the one with the same name; deploys a version when `deploy` is true.
    static func savePipeline(_ doc: JSONObject, app: MockShiftApp) throws {
        guard let name = try doc.string("name"), !name.isEmpty else { throw APIError(.badRequest, "name is required") }
        guard let nodesValue = doc["nodes"] else { throw APIError(.badRequest, "nodes is required") }
        let nodes = try PipelineHandlers.checkedNodes(nodesValue)
        _ = try PipelineGraph(nodes: nodes)  // a cycle or a missing node is a fixture error, not a run-time surprise
        let now = wallClockMicros()
        var record = try app.store.pipeline(namespace: namespace, name: name) ?? {
            let id = IDs.make()
            return PipelineRecord(id: id, namespace: namespace, name: name, mainBranch: id, folderID: nil, description: nil,
                                  nodes: [:], canvasMetadata: .object([:]), createdAt: now, modifiedAt: now, currentVersion: nil)
        }()
        record.nodes = nodes
        record.canvasMetadata = .object(try doc.object("canvas_metadata"))
        record.folderID = try doc.string("folder_id")
        record.description = try doc.string("description")
        record.modifiedAt = max(now, record.modifiedAt + 1)
        if try doc.bool("deploy") {
            let version = SemanticVersion.next(after: record.currentVersion, bump: try doc.string("bump"))
            record.currentVersion = version
            try app.store.savePipeline(record, deploying: PipelineVersion(
                pipelineID: record.id, version: version, nodes: nodes, canvasMetadata: record.canvasMetadata,
                description: record.description, createdAt: record.modifiedAt))
        } else {
            try app.store.savePipeline(record)
        }
    }
}
