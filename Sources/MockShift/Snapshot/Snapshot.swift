import Foundation

/// `mockshift snapshot` (issue 15 item 1): reads an account through the public API, with the calls the SDK makes
/// (API.md §3, API-CHAT §1, §3), and writes it as fixture files (``FixtureDocuments``, ``SnapshotFiles``).
///
/// The calls: `GET /pipelines?verbose=true&include_shared=false&offset&limit` (with `folder_id` for `--folder`),
/// then `GET /pipeline?id=…` for each pipeline and `GET /pipeline?id=…&version=V` for each deployed version it
/// names (`currentVersion`, and `versions` when the object lists them); `GET /chatbots?verbose=true&offset&limit`
/// then `GET /chatbot?id=…`; `GET /agents?verbose=true&offset&limit` then `GET /agent?id=…`. Lists are read a page
/// at a time until a page brings nothing new. Objects picked by name are fetched by name (`GET /pipeline?name=…`).
///
/// What is picked: everything, or, when any of ``Options/pipelines``, ``Options/chatbots``, ``Options/agents``,
/// ``Options/folder`` is given, only those: the named objects, the pipelines of the folder and the chatbots linking
/// them, and the pipeline of every picked chatbot (a fixture chatbot names a fixture pipeline).
///
/// Failures: an object whose fetch fails (an HTTP error, a body that is not the JSON expected) is reported and
/// left out (its file from an earlier snapshot stays as it was); the others are written. A chatbot whose pipeline
/// failed fails too. Only an upstream that cannot be reached, or refuses the key, at the first request ends the
/// snapshot (``Fatal``). Two objects of one kind with the same name cannot both be fixtures (they are keyed by name):
/// the most recently modified is kept, as `fetch(name=…)` would return it, and the others are reported.
///
/// After a complete snapshot (nothing picked, nothing failed), fixture files of the folder that no object wrote
/// (`pipeline-*.json`, `chatbot-*.json`, `agent-*.json`: objects deleted upstream since) are removed.
public final class Snapshotter {
    /// What to read.
    public struct Options: Sendable {
        public var pipelines: [String] = []
        public var chatbots: [String] = []
        public var agents: [String] = []
        public var folder: String?
        /// Objects per list request.
        public var pageSize = 100

        public init() {}

        /// True when only some objects are picked.
        public var picks: Bool { !pipelines.isEmpty || !chatbots.isEmpty || !agents.isEmpty || folder != nil }
    }

    /// What a snapshot did.
    public struct Outcome: Sendable {
        /// File names written (new or changed), left as they were, and removed (stale).
        public var written: [String] = []
        public var unchanged: [String] = []
        public var removed: [String] = []
        /// One line per object (or list) that could not be read.
        public var failures: [String] = []
        /// One line per secret replaced: object, node, field (never the value).
        public var redactions: [String] = []
        /// Objects written, by kind.
        public var pipelines = 0, chatbots = 0, agents = 0
    }

    /// The snapshot could not be taken at all: the upstream cannot be reached or refuses the key, or the folder
    /// cannot be written.
    public struct Fatal: Error, CustomStringConvertible {
        public var description: String
    }

    private let upstream: any UpstreamReading
    private let log: (String) -> Void
    private var reached = false
    private var outcome = Outcome()

    /// - Parameters:
    ///   - upstream: where the API is read.
    ///   - log: receives each progress, failure and redaction line (the command writes them to standard error).
    public init(upstream: any UpstreamReading, log: @escaping (String) -> Void) {
        self.upstream = upstream
        self.log = log
    }

    /// One object read from the upstream: its id, name and the `object` its fetch answered.
    struct Fetched {
        var id: String
        var name: String
        var object: JSONObject
    }

    /// An object to fetch: by id (from a list, with the name it gave for the progress line) or by name (picked:
    /// `id` nil).
    struct Ref: Hashable {
        var id: String?
        var name: String?
        var picked: Bool { id == nil }
    }

    // MARK: Running

    /// Takes the snapshot into `directory`. Throws ``Fatal``.
    public func run(_ options: Options, into directory: String) throws -> Outcome {
        outcome = Outcome()
        reached = false

        // Pipelines first: chatbots name theirs.
        var pipelineRefs: [Ref] = []
        if !options.picks {
            pipelineRefs = try list("pipelines", extra: [("include_shared", "false")])
        } else {
            if let folder = options.folder {
                pipelineRefs += try list("pipelines", extra: [("include_shared", "false"), ("folder_id", folder)])
            }
            pipelineRefs += options.pipelines.map { Ref(id: nil, name: $0) }
        }
        var pipelines: [String: Fetched] = [:]  // by id
        var pipelineVersions: [String: [String: JSONObject]] = [:]  // by id, by version
        var failedPipelines = Set<String>()  // ids
        let folderPipelineIDs = Set(options.folder == nil ? [] : pipelineRefs.compactMap(\.id))
        pipelineRefs = unique(pipelineRefs)
        for (i, ref) in pipelineRefs.enumerated() {
            progress("pipeline", i + 1, pipelineRefs.count, ref)
            if let fetched = try fetchPipeline(ref, versions: &pipelineVersions) {
                pipelines[fetched.id] = fetched
            } else if let id = ref.id {
                failedPipelines.insert(id)
            }
        }

        // Chatbots.
        var chatbotRefs: [Ref] = []
        if !options.picks || options.folder != nil { chatbotRefs = try list("chatbots", extra: []) }
        chatbotRefs += options.chatbots.map { Ref(id: nil, name: $0) }
        var chatbots: [Fetched] = []
        chatbotRefs = unique(chatbotRefs)
        for (i, ref) in chatbotRefs.enumerated() {
            progress("chatbot", i + 1, chatbotRefs.count, ref)
            guard let fetched = try fetch("chatbot", ref) else { continue }
            let link = FixtureDocuments.chatbotPipeline(fetched.object)
            // With --folder, a listed chatbot is kept only when it links a pipeline of the folder.
            if options.picks, !ref.picked, !folderPipelineIDs.contains(link.id ?? "") { continue }
            chatbots.append(fetched)
        }
        // The pipelines (and pinned versions) the chatbots run, when not read yet.
        for bot in chatbots {
            let link = FixtureDocuments.chatbotPipeline(bot.object)
            guard let id = link.id, !failedPipelines.contains(id) else { continue }
            if pipelines[id] == nil {
                log("snapshot: pipeline \(id) (run by chatbot '\(bot.name)')")
                if let fetched = try fetchPipeline(Ref(id: id, name: nil), versions: &pipelineVersions) {
                    pipelines[id] = fetched
                } else {
                    failedPipelines.insert(id)
                    continue
                }
            }
            if let pinned = link.version, pipelineVersions[id]?[pinned] == nil {
                do {
                    pipelineVersions[id, default: [:]][pinned] = try version(pinned, ofPipeline: id)
                } catch let error as UpstreamError {
                    fail("pipeline '\(pipelines[id]!.name)' version \(pinned) (pinned by chatbot '\(bot.name)'): \(error)")
                    pipelines[id] = nil
                    failedPipelines.insert(id)
                }
            }
        }

        // Agents.
        var agentRefs: [Ref] = []
        if !options.picks { agentRefs = try list("agents", extra: []) }
        agentRefs += options.agents.map { Ref(id: nil, name: $0) }
        var agents: [Fetched] = []
        agentRefs = unique(agentRefs)
        for (i, ref) in agentRefs.enumerated() {
            progress("agent", i + 1, agentRefs.count, ref)
            if let fetched = try fetch("agent", ref) { agents.append(fetched) }
        }

        // One object per name and kind, then the documents.
        let keptPipelines = keepOnePerName("pipeline", Array(pipelines.values))
        let pipelineNames = Dictionary(uniqueKeysWithValues: keptPipelines.map { ($0.id, $0.name) })
        var files: [(kind: SnapshotFiles.Kind, name: String, document: JSON)] = []
        for p in keptPipelines {
            do {
                let (document, redactions) = try FixtureDocuments.pipeline(
                    p.object, versions: pipelineVersions[p.id] ?? [:],
                    folderID: folderPipelineIDs.contains(p.id) ? options.folder : nil)
                report(redactions, of: "pipeline '\(p.name)'")
                files.append((.pipeline, p.name, .object(document)))
                outcome.pipelines += 1
            } catch let error as UpstreamError {
                fail("pipeline '\(p.name)': \(error)")
            }
        }
        for bot in keepOnePerName("chatbot", chatbots) {
            let link = FixtureDocuments.chatbotPipeline(bot.object)
            guard let pipelineID = link.id else {
                fail("chatbot '\(bot.name)': it names no pipeline")
                continue
            }
            guard let pipelineName = pipelineNames[pipelineID] else {
                let why = failedPipelines.contains(pipelineID) ? "its pipeline \(pipelineID) could not be read"
                    : pipelines[pipelineID] != nil ? "its pipeline \(pipelineID) has the name of a pipeline modified later"
                    : "its pipeline \(pipelineID) was not found"
                fail("chatbot '\(bot.name)': \(why)")
                continue
            }
            do {
                let (document, redactions) = try FixtureDocuments.chatbot(bot.object, pipelineName: pipelineName, version: link.version)
                report(redactions, of: "chatbot '\(bot.name)'")
                files.append((.chatbot, bot.name, ["chatbots": [.object(document)]]))
                outcome.chatbots += 1
            } catch let error as UpstreamError {
                fail("chatbot '\(bot.name)': \(error)")
            }
        }
        for agent in keepOnePerName("agent", agents) {
            do {
                let (document, redactions) = try FixtureDocuments.agent(agent.object)
                report(redactions, of: "agent '\(agent.name)'")
                files.append((.agent, agent.name, ["agents": [.object(document)]]))
                outcome.agents += 1
            } catch let error as UpstreamError {
                fail("agent '\(agent.name)': \(error)")
            }
        }

        // File names per kind, from the names written (and those of failed objects, when known, so their old
        // files keep their names), then the bytes.
        var rendered: [(name: String, bytes: [UInt8])] = []
        for kind in SnapshotFiles.Kind.objects {
            let mine = files.filter { $0.kind == kind }
            let names = SnapshotFiles.fileNames(kind, names: mine.map(\.name))
            rendered += mine.map { (names[$0.name]!, SnapshotFiles.render($0.document)) }
        }
        rendered.sort { $0.name < $1.name }
        do {
            let written = try SnapshotFiles.write(rendered, into: directory)
            outcome.written = written.written
            outcome.unchanged = written.unchanged
        } catch {
            throw Fatal(description: "cannot write into \(directory): \(error)")
        }
        if !options.picks && outcome.failures.isEmpty {
            let keep = Set(rendered.map(\.name))
            let present = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for file in present.sorted() where SnapshotFiles.isSnapshotFile(file) && !keep.contains(file) {
                do {
                    try FileManager.default.removeItem(atPath: URL(fileURLWithPath: directory).appendingPathComponent(file).path)
                    outcome.removed.append(file)
                    log("snapshot: removed \(file) (no such object upstream any more)")
                } catch {
                    fail("cannot remove the stale file \(file): \(error.localizedDescription)")
                }
            }
        }
        return outcome
    }

    // MARK: Reading

    /// A `GET`; the first one decides whether the upstream can be used at all (else ``Fatal``).
    private func get(_ path: String, _ query: [(String, String)]) throws -> JSONObject {
        do {
            let answer = try upstream.get(path, query: query)
            reached = true
            return answer
        } catch let error as UpstreamError {
            if !reached {
                switch error {
                case .unreachable:
                    throw Fatal(description: "\(error)")
                case let .http(status, message) where status == 401 || status == 403:
                    throw Fatal(description: "the upstream refused the API key (HTTP \(status): \(message))")
                default: break
                }
            }
            reached = true
            throw error
        }
    }

    /// Every object a list route names, a page at a time. A list that fails is reported (its kind is then
    /// missing from the snapshot) and gives nothing.
    private func list(_ kind: String, extra: [(String, String)]) throws -> [Ref] {
        var refs: [Ref] = []
        var seen = Set<String>()
        var offset = 0
        let limit = 100
        while true {
            let page: JSONObject
            do {
                page = try get("/\(kind)", [("verbose", "true")] + extra + [("offset", String(offset)), ("limit", String(limit))])
            } catch let error as UpstreamError {
                fail("cannot list \(kind): \(error)")
                return refs
            }
            var fresh = 0
            var count = 0
            if let objects = page["objects"]?.arrayValue, !objects.isEmpty {
                count = objects.count
                for item in objects {
                    guard let object = item.objectValue, let id = FixtureDocuments.objectID(object) else { continue }
                    if seen.insert(id).inserted {
                        refs.append(Ref(id: id, name: object["name"]?.stringValue))
                        fresh += 1
                    }
                }
            } else if let ids = page["object_ids"]?.arrayValue {
                count = ids.count
                for item in ids {
                    guard let id = FixtureDocuments.idString(item) else { continue }
                    if seen.insert(id).inserted {
                        refs.append(Ref(id: id, name: nil))
                        fresh += 1
                    }
                }
            }
            // A short page is the last; a page of nothing new means the server ignores the offset.
            if count < limit || fresh == 0 { return refs }
            offset += count
        }
    }

    /// One object by id or name (`GET /KIND?id=…` / `?name=…`), or nil after reporting why not.
    private func fetch(_ kind: String, _ ref: Ref) throws -> Fetched? {
        let query = ref.id.map { [("id", $0)] } ?? [("name", ref.name ?? "")]
        let label = ref.name.map { "'\($0)'" } ?? ref.id ?? "?"
        do {
            let answer = try get("/\(kind)", query)
            guard let object = answer["object"]?.objectValue else {
                throw UpstreamError.badBody("no object in the answer")
            }
            guard let id = FixtureDocuments.objectID(object) ?? ref.id else { throw UpstreamError.badBody("the \(kind) has no id") }
            guard let name = object["name"]?.stringValue, !name.isEmpty else { throw UpstreamError.badBody("the \(kind) has no name") }
            return Fetched(id: id, name: name, object: object)
        } catch let error as UpstreamError {
            if case let .http(status, _) = error, status == 404, ref.id == nil {
                fail("\(kind) \(label): no \(kind) of that name")
            } else {
                fail("\(kind) \(label): \(error)")
            }
            return nil
        }
    }

    /// A pipeline with its deployed versions (into `versions`), or nil after reporting why not.
    private func fetchPipeline(_ ref: Ref, versions: inout [String: [String: JSONObject]]) throws -> Fetched? {
        guard let fetched = try fetch("pipeline", ref) else { return nil }
        var numbers = Set<String>()
        if let current = fetched.object["currentVersion"]?.stringValue, SemanticVersion.isValid(current) { numbers.insert(current) }
        for item in fetched.object["versions"]?.arrayValue ?? [] {
            if let v = item.stringValue ?? item["version"]?.stringValue, SemanticVersion.isValid(v) { numbers.insert(v) }
        }
        for number in numbers.sorted() {
            do {
                versions[fetched.id, default: [:]][number] = try version(number, ofPipeline: fetched.id)
            } catch let error as UpstreamError {
                fail("pipeline '\(fetched.name)' version \(number): \(error)")
                return nil
            }
        }
        return fetched
    }

    /// `GET /pipeline?id=…&version=V`'s object (the deployed snapshot's nodes and canvas).
    private func version(_ number: String, ofPipeline id: String) throws -> JSONObject {
        let answer = try get("/pipeline", [("id", id), ("version", number)])
        guard let object = answer["object"]?.objectValue else { throw UpstreamError.badBody("no object in the answer") }
        return object
    }

    // MARK: Helpers

    private func unique(_ refs: [Ref]) -> [Ref] {
        var seen = Set<Ref>()
        return refs.filter { seen.insert($0).inserted }
    }

    private func progress(_ kind: String, _ i: Int, _ count: Int, _ ref: Ref) {
        log("snapshot: \(kind) \(i)/\(count) \(ref.name ?? ref.id ?? "?")")
    }

    private func fail(_ line: String) {
        outcome.failures.append(line)
        log("snapshot: failed: \(line)")
    }

    private func report(_ redactions: [FixtureDocuments.Redaction], of object: String) {
        for r in redactions {
            let line = "\(object)\(r.node.map { " node '\($0)'" } ?? "") field '\(r.field)'"
            outcome.redactions.append(line)
            log("snapshot: redacted \(line)")
        }
    }

    /// The objects of one kind with one per name: the most recently modified (the modified date the object gives,
    /// then the larger id), as `fetch(name=…)` returns it. The others are reported (not failures: the fixtures
    /// cannot hold two objects of one name).
    private func keepOnePerName(_ kind: String, _ objects: [Fetched]) -> [Fetched] {
        func modified(_ f: Fetched) -> String {
            for key in ["modifiedDate", "modified_at", "updated_at", "updatedAt", "modifiedAt"] {
                if let s = f.object[key]?.stringValue { return s }
            }
            return ""
        }
        var byName: [String: Fetched] = [:]
        for object in objects.sorted(by: { $0.id < $1.id }) {
            guard let other = byName[object.name] else {
                byName[object.name] = object
                continue
            }
            let (newer, older) = (modified(object), object.id) > (modified(other), other.id) ? (object, other) : (other, object)
            byName[object.name] = newer
            log("snapshot: \(kind) '\(object.name)' \(older.id) left out: \(kind) \(newer.id) has the same name and was modified later (fixtures are keyed by name)")
        }
        return byName.values.sorted { $0.name < $1.name }
    }
}
