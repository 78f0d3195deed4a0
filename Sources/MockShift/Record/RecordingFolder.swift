import Foundation
import Logging
import Synchronization

/// What `serve --record URL --record-dir DIR` keeps in DIR (issue 15 item 2), written as `mockshift snapshot` writes
/// (``SnapshotFiles``, ``FixtureDocuments``) so that `serve --fixtures DIR` loads it:
///
/// - each pipeline, chatbot and agent the proxy saw (fetched, created or changed through it), one file each:
///   `pipeline-NAME.json`, `chatbot-NAME.json`, `agent-NAME.json`, secrets replaced; deleting one through the proxy
///   removes its file;
/// - the scripted answers of the runs it saw (``RecordedAnswers``), one file per pipeline: `llm-NAME.json`,
///   `{"llm": [rules…]}`, rules sorted by node and prompt; a later run with the same pipeline, node and prompt
///   replaces the earlier one. The `llm-*.json` files already in DIR are read at start, so a second recording
///   session adds to the first.
///
/// Files are rewritten only when their bytes change. Thread-safe: every change is serialised by a lock and
/// written at once.
public final class RecordingFolder: Sendable {
    public let directory: String
    private let logger: Logger

    private struct State {
        /// Objects by kind and id: name and fixture document.
        var objects: [SnapshotFiles.Kind: [String: (name: String, document: JSON)]] = [:]
        /// Scripted answers by pipeline name, by rule key (node id + pattern).
        var scripts: [String: [String: JSONObject]] = [:]
        /// Object files this session wrote (removed again when their object goes).
        var written = Set<String>()
    }
    private let state = Mutex(State())

    /// Reads the scripted answers already recorded in `directory` (its `llm-*.json` files).
    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
        var scripts: [String: [String: JSONObject]] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for file in files.sorted() where file.hasPrefix("llm-") && file.hasSuffix(".json") {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(file).path
            guard let data = FileManager.default.contents(atPath: path),
                  let rules = (try? JSON.parse(Array(data)))?["llm"]?.arrayValue else { continue }
            for rule in rules.compactMap(\.objectValue) {
                guard let pipeline = rule["pipeline_name"]?.stringValue else { continue }
                scripts[pipeline, default: [:]][Self.key(rule)] = rule
            }
        }
        state.withLock { $0.scripts = scripts }
    }

    static func key(_ rule: JSONObject) -> String {
        (rule["node_id"]?.stringValue ?? "") + "\u{0}" + (rule["prompt_pattern"]?.stringValue ?? "")
    }

    /// Keeps (or replaces) the object `id` of `kind`, named `name`, as `document`, and writes the folder.
    public func keep(_ kind: SnapshotFiles.Kind, id: String, name: String, document: JSON) {
        write { $0.objects[kind, default: [:]][id] = (name, document) }
    }

    /// Forgets the object `id` of `kind` (deleted upstream) and removes its file if this session wrote it.
    public func forget(_ kind: SnapshotFiles.Kind, id: String) {
        write { $0.objects[kind]?[id] = nil }
    }

    /// The name kept for object `id` of `kind`, if any.
    public func name(_ kind: SnapshotFiles.Kind, id: String) -> String? {
        state.withLock { $0.objects[kind]?[id]?.name }
    }

    /// Adds scripted answers (``RecordedAnswers``) and writes the folder.
    public func keep(scripts rules: [JSONObject]) {
        guard !rules.isEmpty else { return }
        write { st in
            for rule in rules {
                guard let pipeline = rule["pipeline_name"]?.stringValue else { continue }
                st.scripts[pipeline, default: [:]][Self.key(rule)] = rule
            }
        }
    }

    /// Every recorded scripted answer, by pipeline name.
    public func scripts() -> [String: [JSONObject]] {
        state.withLock { $0.scripts.mapValues { Array($0.values) } }
    }

    /// Applies `change`, renders every file, writes those whose bytes changed and removes the object files of
    /// this session whose objects went; all under the lock, so two changes never interleave their writes.
    private func write(_ change: (inout State) -> Void) {
        state.withLock { st in
            change(&st)
            var files: [(name: String, bytes: [UInt8])] = []
            for kind in SnapshotFiles.Kind.objects {
                let objects = st.objects[kind] ?? [:]
                // Fixtures key objects by name: of two with one name, the last kept wins.
                var byName: [String: JSON] = [:]
                for (_, object) in objects.sorted(by: { $0.key < $1.key }) { byName[object.name] = object.document }
                let names = SnapshotFiles.fileNames(kind, names: byName.keys)
                for (name, document) in byName { files.append((names[name]!, SnapshotFiles.render(document))) }
            }
            let scriptNames = SnapshotFiles.fileNames(.llm, names: st.scripts.keys)
            for (pipeline, rules) in st.scripts {
                let sorted = rules.sorted { $0.key < $1.key }.map { JSON.object($0.value) }
                files.append((scriptNames[pipeline]!, SnapshotFiles.render(["llm": .array(sorted)])))
            }
            do {
                _ = try SnapshotFiles.write(files, into: directory)
            } catch {
                logger.error("record: cannot write into \(directory): \(error)")
                return
            }
            let current = Set(files.map(\.name))
            for gone in st.written.subtracting(current) where SnapshotFiles.isSnapshotFile(gone) {
                try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: directory).appendingPathComponent(gone).path)
            }
            st.written = current
        }
    }
}
