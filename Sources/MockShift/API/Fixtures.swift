import Dispatch
import Foundation
import Synchronization

/// Fixture files (`serve --fixtures DIR`, SPEC §1, §6 and §7): the starting state of every namespace.
///
/// Every `*.json` file of the folder (a recording's `fidelity-report.json` aside), in name order, is read once at start and checked as the API would check it.
/// A file holds an object with any of `pipelines` (pipeline documents as the SDK sends them, plus `name` and
/// optionally `deploy` and `bump`), `chatbots` (``Chatbot``: a chatbot naming its pipeline by name, issue 12
/// item 6), `agents` (``Agent``: a short form expanded to the document `Agent.new` saves, issue 13 item 5), `llm`
/// (scripted answers, as `POST /_mock/llm` takes) and `faults` (as `POST /_mock/faults` takes),
/// or is one pipeline document itself (an object with `name` and `nodes`). A node
/// without a `name` gets its key in `nodes` as its name (the SDK runs pipelines by node names; issue 11 item 9).
///
/// The namespace `default` gets the fixtures at every start, updated by name (so a restart on the same database
/// does not duplicate them). Every other namespace gets them the first time a request with its key arrives
/// (``FixtureSeeder``); `POST /_mock/reset` returns a namespace to them (issue 11 item 8).
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
        public var files = 0, pipelines = 0, chatbots = 0, agents = 0, scripts = 0, faults = 0
    }

    /// The namespace of requests without a key, loaded at start.
    public static let namespace = "default"

    /// One fixture pipeline, checked once at start.
    struct Pipeline: Sendable {
        var name: String
        var nodes: JSONObject
        var canvasMetadata: JSON
        var folderID: String?
        var description: String?
        var deploy: Bool
        var bump: String?
        /// Deployed snapshots with their own numbers (`versions`, what `mockshift snapshot` writes), oldest first;
        /// empty unless the file lists them. `deploy` and `versions` exclude each other.
        var versions: [Version] = []

        /// One listed deployed snapshot: `{"version": "1.2.0", "nodes"?, "canvas_metadata"?, "description"?}`;
        /// without `nodes` it is the pipeline's own nodes and canvas.
        struct Version: Sendable {
            var version: String
            var nodes: JSONObject
            var canvasMetadata: JSON
            var description: String?
        }

        /// How it is written into `namespace` (``Store/SeedPipeline``): over the namespace's pipeline of the same
        /// name when there is one (keeping its id), else as a new pipeline; a deploy snapshot when `deploy` is true,
        /// or the listed `versions` under their own numbers (the newest listed one becoming the latest deployed).
        func seed(into namespace: String) -> Store.SeedPipeline {
            Store.SeedPipeline(name: name) { existing in
                let now = wallClockMicros()
                var record = existing ?? {
                    let id = IDs.make()
                    return PipelineRecord(id: id, namespace: namespace, name: name, mainBranch: id, folderID: nil,
                                          description: nil, nodes: [:], canvasMetadata: .object([:]), createdAt: now,
                                          modifiedAt: now, currentVersion: nil)
                }()
                record.nodes = nodes
                record.canvasMetadata = canvasMetadata
                record.folderID = folderID
                record.description = description
                record.modifiedAt = max(now, record.modifiedAt + 1)
                if !versions.isEmpty {
                    record.currentVersion = versions.last?.version
                    return (record, versions.map {
                        PipelineVersion(pipelineID: record.id, version: $0.version, nodes: $0.nodes,
                                        canvasMetadata: $0.canvasMetadata, description: $0.description,
                                        createdAt: record.modifiedAt)
                    })
                }
                guard deploy else { return (record, []) }
                let version = SemanticVersion.next(after: record.currentVersion, bump: bump)
                record.currentVersion = version
                return (record, [PipelineVersion(pipelineID: record.id, version: version, nodes: nodes,
                                                 canvasMetadata: canvasMetadata, description: description,
                                                 createdAt: record.modifiedAt)])
            }
        }
    }

    /// One fixture chatbot, checked once at start against the fixture pipeline it names: `{"name", "pipeline":
    /// PIPELINE_NAME | {"name": PIPELINE_NAME, "version"?: "latest" | "MAJOR.MINOR.PATCH"}, "input"?, "output"?,
    /// "description"?, "deployed"?, "deployment_options"?, "access_config"?, "twilio_config"?, "slack_config"?}`. It
    /// runs the pipeline's latest deployed version; a pinned version must be one the pipeline lists under
    /// `versions` (those keep their numbers, while `deploy: true` is renumbered at every start of `default`). Empty
    /// `input`/`output` are resolved as `POST /chatbot` does (SPEC §9).
    struct Chatbot: Sendable {
        var name: String
        var pipelineName: String
        /// A pinned deployed version (nil: the latest).
        var pipelineVersion: String? = nil
        var input: String
        var output: String
        var description: String
        var deployed: Bool
        var configs: JSONObject
        /// Where it was defined, to name it when its pipeline check fails.
        var file = "", field = ""

        static let keys = Set(["name", "pipeline", "input", "output", "description", "deployed"])
            .union(ChatbotHandlers.configKeys)

        /// How it is written into `namespace`: over the namespace's chatbot of the same name (keeping its id and
        /// conversations), else as a new chatbot, linked to the namespace's pipeline of `pipelineName`.
        func seed(into namespace: String) -> Store.SeedChatbot {
            Store.SeedChatbot(name: name, pipelineName: pipelineName) { existing, pipelineID in
                let now = wallClockMicros()
                return ChatbotRecord(id: existing?.id ?? IDs.make(), namespace: namespace, name: name,
                                     description: description, pipelineID: pipelineID, pipelineVersion: pipelineVersion,
                                     input: input, output: output, deployed: deployed, configs: configs,
                                     createdAt: existing?.createdAt ?? now,
                                     modifiedAt: max(now, (existing?.modifiedAt ?? 0) + 1))
            }
        }
    }

    /// Everything a fixture folder defines, parsed once and kept in memory: what a namespace starts from.
    struct Contents: Sendable {
        var pipelines: [Pipeline] = []
        var chatbots: [Chatbot] = []
        var agents: [Agent] = []
        /// Scripted answers and fault rules as written in the files (checked when loaded into `default`).
        var llm: [JSONObject] = []
        var faults: [JSONObject] = []

        /// Writes the pipelines, chatbots and agents into `namespace` (``Store/seedNamespace(_:mode:pipelines:chatbots:agents:)``), then adds the
        /// scripted answers and fault rules, which live in memory (an equal rule already there is replaced, so
        /// adding them again does not double them). With `.ifNew` and a namespace seeded already (before a
        /// restart), only the rules are added: the pipelines are as the user left them.
        @discardableResult
        func apply(to namespace: String, mode: Store.SeedMode, app: MockShiftApp) throws -> (pipelines: Int, runs: Int) {
            let outcome = try app.store.seedNamespace(namespace, mode: mode, pipelines: pipelines.map { $0.seed(into: namespace) },
                                                      chatbots: chatbots.map { $0.seed(into: namespace) },
                                                      agents: agents.map { $0.seed(into: namespace) })
            for rule in llm { try app.llmScripts.add(namespace: namespace, rule) }
            for rule in faults { _ = try app.faults.add(namespace: namespace, rule) }
            return outcome.deleted
        }
    }

    /// Reads every fixture file in `directory`, loads them into the namespace `default` (updating its
    /// pipelines by name), and hands them to the app's ``FixtureSeeder`` for every other namespace. Throws
    /// ``LoadError`` naming the file and field (for malformed JSON, the line and column) at the first problem;
    /// then nothing is loaded.
    public static func load(directory: String, into app: MockShiftApp) throws -> Summary {
        var fixtures = Contents()
        var summary = Summary()
        // Scripted answers and faults are checked by the code that adds them, so they are loaded into `default`
        // file by file to name the file and field of a bad one; pipelines are checked while they are parsed.
        var rules: [(file: String, field: String, llm: Bool, rule: JSONObject)] = []
        for path in try files(in: directory) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw LoadError(file: path, field: "(file)", message: "cannot read the file")
            }
            var bytes = Array(data)
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // a UTF-8 byte order mark (editors add one)
            let value: JSON
            do { value = try JSON.parse(bytes) } catch let error as JSONParseError {
                let (line, column) = error.position(in: bytes)
                throw LoadError(file: path, field: "line \(line), column \(column)", message: error.message)
            }
            guard let object = value.objectValue else {
                throw LoadError(file: path, field: "(file)", message: "not a JSON object")
            }
            try parse(object, file: path, into: &fixtures, rules: &rules)
            summary.files += 1
        }
        try checkChatbots(&fixtures)
        for entry in rules {
            do {
                if entry.llm { try app.llmScripts.add(namespace: namespace, entry.rule) } else { _ = try app.faults.add(namespace: namespace, entry.rule) }
            } catch let error as APIError {
                _ = app.llmScripts.clear(namespace: namespace)
                _ = app.faults.clear(namespace: namespace)
                throw LoadError(file: entry.file, field: entry.field, message: error.message)
            }
        }
        try app.store.seedNamespace(namespace, mode: .always, pipelines: fixtures.pipelines.map { $0.seed(into: namespace) },
                                    chatbots: fixtures.chatbots.map { $0.seed(into: namespace) },
                                    agents: fixtures.agents.map { $0.seed(into: namespace) })
        summary.pipelines = fixtures.pipelines.count
        summary.chatbots = fixtures.chatbots.count
        summary.agents = fixtures.agents.count
        summary.scripts = fixtures.llm.count
        summary.faults = fixtures.faults.count
        app.fixtureSeeder.install(fixtures, seeded: namespace)
        return summary
    }

    /// The `*.json` files of the folder, in name order; not a recording's fidelity report
    /// (``FidelityReport/jsonFileName``), which a record dir holds beside its fixtures.
    static func files(in directory: String) throws -> [String] {
        let folder = URL(fileURLWithPath: directory)
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder.path)
                .filter { $0.hasSuffix(".json") && $0 != FidelityReport.jsonFileName }
                .sorted().map { folder.appendingPathComponent($0).path }
        } catch {
            throw LoadError(file: directory, field: "(folder)", message: "cannot read the folder: \(error.localizedDescription)")
        }
    }

    static func parse(_ object: JSONObject, file: String, into fixtures: inout Contents,
                      rules: inout [(file: String, field: String, llm: Bool, rule: JSONObject)]) throws {
        func each(_ key: String, _ body: (String, JSONObject) throws -> Void) throws {
            guard let value = object[key] else { return }
            guard let items = value.arrayValue else { throw LoadError(file: file, field: key, message: "must be a list") }
            for (i, item) in items.enumerated() {
                let field = "\(key)[\(i)]"
                guard let entry = item.objectValue else { throw LoadError(file: file, field: field, message: "must be an object") }
                do { try body(field, entry) } catch let error as APIError {
                    throw LoadError(file: file, field: field, message: error.message)
                }
            }
        }
        if object["nodes"] != nil && object["pipelines"] == nil {
            do { fixtures.pipelines.append(try pipeline(object)) } catch let error as APIError {
                throw LoadError(file: file, field: "(pipeline)", message: error.message)
            }
            return
        }
        let known: Set<String> = ["pipelines", "chatbots", "agents", "llm", "faults"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) {
            throw LoadError(file: file, field: unknown, message: "unknown key (expected pipelines, chatbots, agents, llm, faults, or a pipeline with nodes)")
        }
        try each("pipelines") { _, entry in fixtures.pipelines.append(try pipeline(entry)) }
        try each("chatbots") { field, entry in
            var bot = try chatbot(entry)
            if fixtures.chatbots.contains(where: { $0.name == bot.name }) {
                throw APIError(.badRequest, "a chatbot named '\(bot.name)' is defined twice")
            }
            (bot.file, bot.field) = (file, field)
            fixtures.chatbots.append(bot)
        }
        try each("agents") { _, entry in
            let agent = try agent(entry)
            if fixtures.agents.contains(where: { $0.name == agent.name }) {
                throw APIError(.badRequest, "an agent named '\(agent.name)' is defined twice")
            }
            fixtures.agents.append(agent)
        }
        try each("llm") { field, entry in
            fixtures.llm.append(entry)
            rules.append((file, field, true, entry))
        }
        try each("faults") { field, entry in
            fixtures.faults.append(entry)
            rules.append((file, field, false, entry))
        }
    }

    /// A fixture chatbot's own fields (its pipeline is checked once every file is read: ``checkChatbots(_:)``).
    static func chatbot(_ doc: JSONObject) throws -> Chatbot {
        if let unknown = doc.keys.sorted().first(where: { !Chatbot.keys.contains($0) }) {
            throw APIError(.badRequest, "unknown key '\(unknown)' (expected \(Chatbot.keys.sorted().joined(separator: ", ")))")
        }
        guard let name = try doc.string("name"), !name.isEmpty else { throw APIError(.badRequest, "name is required") }
        let pipelineName: String?
        var pinned: String?
        switch doc["pipeline"] {
        case let .string(text)?: pipelineName = text
        case let .object(link)?:
            pipelineName = try link.string("name")
            let version = try link.string("version")
            guard version == nil || version == "latest" || SemanticVersion.isValid(version!) else {
                throw APIError(.badRequest, "pipeline.version must be \"latest\" or MAJOR.MINOR.PATCH")
            }
            if version != "latest" { pinned = version }
        default: pipelineName = nil
        }
        guard let pipelineName, !pipelineName.isEmpty else {
            throw APIError(.badRequest, "pipeline is required: the name of a fixture pipeline, or {\"name\": …}")
        }
        var configs = JSONObject()
        for key in ChatbotHandlers.configKeys { configs[key] = .object(try doc.object(key)) }
        return Chatbot(name: name, pipelineName: pipelineName, pipelineVersion: pinned, input: try doc.string("input") ?? "",
                       output: try doc.string("output") ?? "", description: try doc.string("description") ?? "",
                       deployed: try doc.bool("deployed"), configs: configs)
    }

    /// Each fixture chatbot names a fixture pipeline (the last one of that name, as seeding keeps the last) with
    /// the input and output nodes it names, in the version it runs (pinned, else the latest listed one, else the
    /// pipeline's nodes); empty names are resolved here, once, as `POST /chatbot` resolves them.
    static func checkChatbots(_ fixtures: inout Contents) throws {
        for (i, bot) in fixtures.chatbots.enumerated() {
            let pipeline = fixtures.pipelines.last(where: { $0.name == bot.pipelineName })
            if let pinned = bot.pipelineVersion, !(pipeline?.versions.contains(where: { $0.version == pinned }) ?? false) {
                throw LoadError(file: bot.file, field: bot.field,
                                message: "pipeline.version \(pinned): a pinned version must be listed under versions of the fixture pipeline '\(bot.pipelineName)'")
            }
            guard let pipeline else {
                throw LoadError(file: bot.file, field: bot.field,
                                message: "pipeline '\(bot.pipelineName)' is not a fixture pipeline")
            }
            let nodes = bot.pipelineVersion.flatMap { pinned in pipeline.versions.first(where: { $0.version == pinned })?.nodes }
                ?? pipeline.versions.last?.nodes ?? pipeline.nodes
            do {
                fixtures.chatbots[i].input = try ChatbotHandlers.nodeName(bot.input, of: "input", in: nodes)
                fixtures.chatbots[i].output = try ChatbotHandlers.nodeName(bot.output, of: "output", in: nodes)
            } catch let error as APIError {
                throw LoadError(file: bot.file, field: bot.field, message: error.message)
            }
        }
    }

    /// Checks one pipeline document as `POST /v1/update/pipeline` would (node shapes, no cycle, no template
    /// naming a missing node). A node without `name` (or with an empty one) is named after its key, unless
    /// another node already has that name (then the file is refused, naming both). `versions` (deployed snapshots
    /// under their own numbers, as `mockshift snapshot` writes them) are checked the same way.
    static func pipeline(_ doc: JSONObject) throws -> Pipeline {
        guard let name = try doc.string("name"), !name.isEmpty else { throw APIError(.badRequest, "name is required") }
        guard let nodesValue = doc["nodes"] else { throw APIError(.badRequest, "nodes is required") }
        let nodes = try namedNodes(nodesValue)
        let canvas = JSON.object(try doc.object("canvas_metadata"))
        let deploy = try doc.bool("deploy")
        var versions: [Pipeline.Version] = []
        for (i, item) in (try doc.list("versions") ?? []).enumerated() {
            let field = "versions[\(i)]"
            guard let entry = item.objectValue else { throw APIError(.badRequest, "\(field) must be an object") }
            if let unknown = entry.keys.sorted().first(where: { !["version", "nodes", "canvas_metadata", "description"].contains($0) }) {
                throw APIError(.badRequest, "\(field): unknown key '\(unknown)' (expected version, nodes, canvas_metadata, description)")
            }
            guard let number = try entry.string("version"), SemanticVersion.isValid(number) else {
                throw APIError(.badRequest, "\(field).version must be MAJOR.MINOR.PATCH")
            }
            guard !versions.contains(where: { $0.version == number }) else {
                throw APIError(.badRequest, "\(field): version \(number) is listed twice")
            }
            let versionNodes: JSONObject
            do { versionNodes = try entry["nodes"].map(namedNodes) ?? nodes } catch let error as APIError {
                throw APIError(.badRequest, "\(field).\(error.message)")
            }
            versions.append(Pipeline.Version(
                version: number, nodes: versionNodes,
                canvasMetadata: entry["canvas_metadata"] == nil ? canvas : .object(try entry.object("canvas_metadata")),
                description: try entry.string("description")))
        }
        if deploy && !versions.isEmpty {
            throw APIError(.badRequest, "deploy and versions exclude each other (versions lists the deployed snapshots)")
        }
        versions.sort { SemanticVersion.parts($0.version)!.lexicographicallyPrecedes(SemanticVersion.parts($1.version)!) }
        return Pipeline(name: name, nodes: nodes, canvasMetadata: canvas,
                        folderID: try doc.string("folder_id"), description: try doc.string("description"),
                        deploy: deploy, bump: try doc.string("bump"), versions: versions)
    }

    /// A pipeline's `nodes` checked (``PipelineHandlers/checkedNodes(_:)``), unnamed nodes named after their key,
    /// and the graph checked (a cycle or a missing node is a fixture error, not a run-time surprise).
    static func namedNodes(_ nodesValue: JSON) throws -> JSONObject {
        var nodes = try PipelineHandlers.checkedNodes(nodesValue)
        var named: [String: String] = [:]  // node name → key
        for (key, node) in nodes {
            if let given = node["name"]?.stringValue, !given.isEmpty { named[given] = key }
        }
        for (key, node) in nodes {
            guard var object = node.objectValue, (object["name"]?.stringValue ?? "").isEmpty else { continue }
            if let other = named[key] {
                throw APIError(.badRequest, "node '\(key)' has no name, and its key is the name of node '\(other)'")
            }
            object["name"] = .string(key)
            nodes[key] = .object(object)
            named[key] = key
        }
        _ = try PipelineGraph(nodes: nodes)
        return nodes
    }
}

/// Gives every namespace the fixtures as its starting state (issue 11 item 8): a key seen for the first time
/// since the daemon started is seeded before its request is served (``ensureSeeded(_:app:)``, called by
/// `MockShiftApp.respond` once the key is known), and `POST /_mock/reset` returns a namespace to them
/// (``reset(_:app:)``).
///
/// "Seen for the first time" survives restarts through the table `namespaces` (``Store/seedNamespace(_:mode:pipelines:chatbots:agents:)``):
/// a namespace recorded there keeps its pipelines as the user left them (deleted ones stay deleted), and only
/// the scripted answers and fault rules, which live in memory, are added again; a namespace not recorded gets
/// everything, pipelines matched by name. Fixture files changed between restarts therefore reach `default` (loaded
/// at every start) and new keys, and other namespaces only when they are reset.
///
/// Cost: keys already seen cost one lookup in an in-memory set, no SQL. A new key's first requests, when several
/// arrive at once, wait for one seeding (one write transaction of the parsed fixtures plus the rules); other keys
/// are not held up except by that transaction's turn on the store's writer.
final class FixtureSeeder: Sendable {
    private struct State {
        var fixtures: Fixtures.Contents?
        /// Namespaces seeded since start (or loaded at start: `default`).
        var seeded: Set<String> = []
        /// Namespaces being seeded or reset now, with what their other requests wait on.
        var busy: [String: DispatchGroup] = [:]
    }

    /// False until fixtures are installed: without `--fixtures`, a request costs one atomic load here.
    private let enabled = Atomic<Bool>(false)
    private let state = Mutex(State())

    /// Keeps `fixtures` for every namespace from now on; `namespace` has them already.
    func install(_ fixtures: Fixtures.Contents, seeded namespace: String) {
        state.withLock {
            $0.fixtures = fixtures
            $0.seeded.insert(namespace)
        }
        enabled.store(true, ordering: .releasing)
    }

    /// Seeds `namespace` unless this daemon has seen it already. Concurrent first requests of one key wait for a
    /// single seeding; if it fails (a storage error), they fail too and the next request tries again.
    func ensureSeeded(_ namespace: String, app: MockShiftApp) throws {
        guard enabled.load(ordering: .acquiring), !state.withLock({ $0.seeded.contains(namespace) }) else { return }
        try exclusive(namespace) {
            guard let fixtures = state.withLock({ $0.seeded.contains(namespace) ? nil : $0.fixtures }) else { return }
            try fixtures.apply(to: namespace, mode: .ifNew, app: app)
            state.withLock { _ = $0.seeded.insert(namespace) }
        }
    }

    /// `POST /_mock/reset` of one namespace: terminates its live runs, deletes its pipelines, runs, journal,
    /// fault rules and scripted answers, then, with fixtures, gives it the fixtures again, all while its other
    /// requests wait. Returns how many pipelines and runs were deleted.
    func reset(_ namespace: String, app: MockShiftApp) throws -> (pipelines: Int, runs: Int) {
        try exclusive(namespace) {
            app.engine.terminateRuns(namespace: namespace)
            app.journal.clear(namespace: namespace)
            _ = app.faults.clear(namespace: namespace)
            _ = app.llmScripts.clear(namespace: namespace)
            guard let fixtures = state.withLock({ $0.fixtures }) else { return try app.store.deleteNamespace(namespace) }
            let deleted = try fixtures.apply(to: namespace, mode: .reset, app: app)
            state.withLock { _ = $0.seeded.insert(namespace) }
            return deleted
        }
    }

    /// Runs `body` while no other seeding or reset of `namespace` runs; others wait for it.
    private func exclusive<T>(_ namespace: String, _ body: () throws -> T) throws -> T {
        let mine = DispatchGroup()
        mine.enter()
        while let running = state.withLock({ s -> DispatchGroup? in
            if let running = s.busy[namespace] { return running }
            s.busy[namespace] = mine
            return nil
        }) {
            running.wait()
        }
        defer {
            state.withLock { _ = $0.busy.removeValue(forKey: namespace) }
            mine.leave()
        }
        return try body()
    }
}
