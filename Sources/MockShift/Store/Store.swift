import CSQLite3
import Dispatch
import Foundation
import Synchronization

/// Where MockShift keeps pipelines, versions and runs: SQLite, WAL, `synchronous=NORMAL`, a busy timeout and
/// versioned migrations (TECH-NOTES §5, R7–R8). One serial queue owns the only write connection; queries use a
/// small pool of read-only connections. Every method that changes state returns after its commit, so a caller
/// that reports the change afterwards never reports an uncommitted state (SPEC §3). Only this type writes SQL.
///
/// `path` may be `:memory:`: then one in-memory database (SQLite's `memdb` VFS) is shared by all connections
/// and nothing persists.
public final class Store: @unchecked Sendable {
    // @unchecked: `writer` is used only on `writeQueue`; readers are handed out one thread at a time via `readers`.
    private let writer: SQLiteConnection
    fileprivate let writeQueue = DispatchQueue(label: "mockshift.store.writer")
    /// Commits the groups of callers that do not wait (``saveRuns(_:then:)``).
    private let committer = Committer()
    /// Runs the WAL checkpoints off the committing threads (nil for an in-memory database).
    let checkpointer: Checkpointer?
    private let readers = Mutex<[SQLiteConnection]>([])
    private let readPath: String
    private let isMemory: Bool

    /// Opens (creating if needed, with parent folders) and migrates the database. Throws ``SQLiteError`` or a
    /// Foundation error for the folder.
    public convenience init(path: String) throws {
        try self.init(path: path, checkpointPages: 10_000)
    }

    /// ``init(path:)`` with the WAL size (pages) past which a checkpoint is run (tests make it small).
    init(path: String, checkpointPages: Int32) throws {
        if path == ":memory:" {
            isMemory = true
            readPath = "file:/mockshift-\(getpid())-\(IDs.make())?vfs=memdb"
        } else {
            isMemory = false
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            readPath = path
        }
        writer = try SQLiteConnection(path: readPath, readOnly: false)
        if !isMemory {
            try writer.execute("PRAGMA journal_mode=WAL")
            try writer.execute("PRAGMA synchronous=NORMAL")
        }
        try writer.execute("PRAGMA foreign_keys=ON")
        try Store.migrate(writer)
        // Checkpoint every 10,000 WAL pages (about 40 MB) rather than SQLite's 1,000 (a tenth of the checkpoints:
        // measured +10 % instant runs/s, scripts/bench-instant-runs), and on a thread of their own rather than
        // inside some commit (``Checkpointer``: the commit's thread no longer waits for the disk).
        if !isMemory {
            let checkpointer = try Checkpointer(path: readPath, thresholdPages: checkpointPages)
            checkpointer.attach(to: writer)
            self.checkpointer = checkpointer
        } else {
            checkpointer = nil
        }
        // Start-up may wait for another process's lock (5 s); afterwards the one writer waits only briefly:
        // within this process writes are serialised by `writeQueue`, so only another process can hold the lock,
        // and a caller (a transport or scheduler thread) must not wait seconds for it. The write fails fast and
        // the store is unavailable until a try gets through (``isWritable``).
        sqlite3_busy_timeout(writer.handle, Store.writerBusyTimeoutMs)
        committer.store = self
        committer.start()
    }

    /// At shutdown (SPEC §1): copies the whole WAL into the database file and empties it (a TRUNCATE checkpoint),
    /// so the next start does not read the WAL back (scripts/bench-ready: with 10,000 pipelines left in the WAL the
    /// start took 118 ms instead of 33). Checkpoints otherwise run off the committing threads (``Checkpointer``),
    /// and nothing closes the connections at exit. A failure is harmless (the WAL stays and is read at start).
    public func checkpointForShutdown() {
        guard !isMemory else { return }
        writeQueue.sync { _ = sqlite3_wal_checkpoint_v2(writer.handle, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil) }
    }

    deinit {
        // Nothing else holds the store now: the writer is free to lose its hook before the checkpointer goes.
        checkpointer?.detach(from: writer)
        committer.stop()
    }

    // MARK: Connections

    /// How long the writer waits for another process's lock before a write fails (milliseconds).
    static let writerBusyTimeoutMs: Int32 = 50

    @discardableResult
    func write<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try health.check()
        do {
            let value = try writeQueue.sync { try writer.transaction { try body(writer) } }
            health.succeeded()
            return value
        } catch let error as SQLiteError where error.isTransient {
            throw health.failed(error)
        }
    }

    /// Takes the write lock and lets it go, writing nothing: for a change that acts on memory too (a reset
    /// clears rules and stops runs) and must not do so when the database cannot be written. Throws
    /// ``StoreUnavailable`` when the lock cannot be had (issue 11 item 2).
    public func ensureWritable() throws {
        try write { _ in }
    }

    // MARK: Write health

    /// Whether writes currently get through (issue 11 item 2). After a transient failure (another process holds
    /// the lock, the disk is full) writes fail at once with ``StoreUnavailable`` instead of each waiting for the
    /// lock, except one try when the back-off (100 ms, doubling to 1 s) has passed; the first write that gets
    /// through makes the store available again.
    public var isWritable: Bool { !health.state.withLock { $0.failing } }

    private let health = WriteHealth()

    final class WriteHealth: Sendable {
        struct State {
            var failing = false
            var reason = ""
            var retryAt: UInt64 = 0  // DispatchTime nanoseconds
            var backoffMs: UInt64 = 100
        }
        let state = Mutex(State())

        /// Throws ``StoreUnavailable`` while failing and the next try is not due; lets one try through when it is.
        func check() throws(StoreUnavailable) {
            let refusal: String? = state.withLock { s in
                guard s.failing else { return nil }
                let now = DispatchTime.now().uptimeNanoseconds
                if now < s.retryAt { return s.reason }
                s.retryAt = now + s.backoffMs * 1_000_000  // this caller is the try; others keep failing fast
                return nil
            }
            if let refusal { throw StoreUnavailable(reason: refusal) }
        }

        func succeeded() {
            state.withLock { s in
                guard s.failing else { return }
                s = State()
            }
        }

        func failed(_ error: SQLiteError) -> StoreUnavailable {
            state.withLock { s in
                let now = DispatchTime.now().uptimeNanoseconds
                if s.failing { s.backoffMs = min(s.backoffMs * 2, 1_000) }
                s.failing = true
                s.reason = error.message
                s.retryAt = now + s.backoffMs * 1_000_000
            }
            return StoreUnavailable(reason: error.message)
        }
    }

    func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        let connection = try readers.withLock { $0.popLast() } ?? SQLiteConnection(path: readPath, readOnly: !isMemory)
        defer { readers.withLock { if $0.count < 8 { $0.append(connection) } } }
        return try body(connection)
    }

    // MARK: Schema

    /// Migrations, applied in order past `PRAGMA user_version`. Append; never edit a shipped one.
    static let migrations: [String] = [
        """
        CREATE TABLE pipelines (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            main_branch TEXT NOT NULL,
            folder_id TEXT,
            description TEXT,
            nodes TEXT NOT NULL,
            canvas_metadata TEXT NOT NULL,
            current_version TEXT,
            created_at INTEGER NOT NULL,
            modified_at INTEGER NOT NULL
        );
        CREATE INDEX pipelines_by_name ON pipelines(namespace, name, modified_at);
        CREATE TABLE pipeline_versions (
            pipeline_id TEXT NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
            version TEXT NOT NULL,
            nodes TEXT NOT NULL,
            canvas_metadata TEXT NOT NULL,
            description TEXT,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (pipeline_id, version)
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            pipeline_id TEXT NOT NULL,
            mode TEXT NOT NULL,
            version TEXT,
            inputs TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT,
            error TEXT,
            partial_outputs TEXT,
            usage TEXT,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            ended_at INTEGER
        );
        CREATE INDEX runs_by_status ON runs(status);
        CREATE INDEX runs_by_pipeline ON runs(pipeline_id);
        CREATE TABLE run_nodes (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            node_id TEXT NOT NULL,
            state TEXT NOT NULL,
            PRIMARY KEY (run_id, node_id)
        );
        """,
        // 2: run options the SDK sends besides inputs (session_id, trace_id, webhook_url, ...).
        "ALTER TABLE runs ADD COLUMN options TEXT;",
        // 3: listing walks this index and stops at LIMIT instead of reading (and sorting) every full row.
        "CREATE INDEX pipelines_by_modified ON pipelines(namespace, modified_at);",
        // 4: a run's timeline (node started, first token, tokens, paused, terminated, ...).
        "ALTER TABLE runs ADD COLUMN events TEXT;",
        // 5: shares recorded by POST /pipeline/{id}/share (API.md §3.8).
        """
        CREATE TABLE pipeline_shares (
            pipeline_id TEXT NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
            share TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX pipeline_shares_by_pipeline ON pipeline_shares(pipeline_id);
        """,
        // 6: retention (`serve --keep-runs`) finds a namespace's oldest runs through this index.
        "CREATE INDEX runs_by_namespace ON runs(namespace, created_at);",
        // 7: fewer pages written per run commit (scripts/bench-instant-runs): only unfinished runs are looked up
        // by status (restart recovery), so index just those; runs of one pipeline are found through the
        // namespace index (every query names the namespace).
        """
        DROP INDEX runs_by_status;
        DROP INDEX runs_by_pipeline;
        CREATE INDEX runs_unfinished ON runs(status) WHERE status IN ('in_progress', 'paused');
        """,
        // 8: namespaces that were given the fixtures (`serve --fixtures`) as their starting state, so a restart
        // neither seeds them again (bringing back pipelines the user deleted) nor forgets to seed a new key.
        "CREATE TABLE namespaces (name TEXT PRIMARY KEY, seeded_at INTEGER NOT NULL);",
        // 9: chatbots, their conversations and each conversation's finished turns (SPEC §9, issue 12).
        """
        CREATE TABLE chatbots (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            pipeline_id TEXT NOT NULL,
            pipeline_version TEXT,
            input TEXT NOT NULL,
            output TEXT NOT NULL,
            deployed INTEGER NOT NULL,
            configs TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            modified_at INTEGER NOT NULL
        );
        CREATE INDEX chatbots_by_namespace ON chatbots(namespace, created_at);
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            chatbot_id TEXT NOT NULL REFERENCES chatbots(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX conversations_by_chatbot ON conversations(chatbot_id, created_at);
        CREATE TABLE conversation_turns (
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            user_text TEXT NOT NULL,
            answer TEXT NOT NULL,
            run_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            error TEXT,
            created_at INTEGER NOT NULL,
            ended_at INTEGER NOT NULL,
            PRIMARY KEY (conversation_id, position)
        );
        CREATE INDEX conversation_turns_by_run ON conversation_turns(run_id);
        """,
        // 10: files uploaded to chatbot conversations, with their bytes (SPEC §9 "Files", issue 12 item 5), and
        // each conversation's "temporary knowledge base" id, given by its first upload (API-CHAT §1.2). Files go
        // with their conversation (and so with its chatbot, and with a reset of the namespace).
        """
        ALTER TABLE conversations ADD COLUMN knowledge_base_id TEXT;
        CREATE TABLE conversation_files (
            document_id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            bytes BLOB NOT NULL,
            message_index INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX conversation_files_in_order ON conversation_files(conversation_id, position);
        """,
        // 11: agents (SPEC §11, issue 13): the SDK's document as saved, and a snapshot per deploy.
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            document TEXT NOT NULL,
            current_version TEXT,
            created_at INTEGER NOT NULL,
            modified_at INTEGER NOT NULL
        );
        CREATE INDEX agents_by_namespace ON agents(namespace, created_at);
        CREATE TABLE agent_versions (
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            version TEXT NOT NULL,
            document TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (agent_id, version)
        );
        """,
        // 12: WebSocket sessions (SPEC §10, issue 13) and their messages, in order. No foreign key to the owner:
        // it may be an agent, and a session outlives its chatbot's deletion as history.
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            owner_type TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            terminated_at INTEGER
        );
        CREATE INDEX sessions_by_namespace ON sessions(namespace, created_at);
        CREATE TABLE session_messages (
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            id TEXT NOT NULL,
            sender TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (session_id, position)
        );
        """,
    ]

    static func migrate(_ db: SQLiteConnection) throws {
        let current = try db.query("PRAGMA user_version").first?.first?.int ?? 0
        guard current < migrations.count else { return }
        try db.transaction {
            for version in Int(current)..<migrations.count {
                try db.execute(migrations[version])
            }
            try db.execute("PRAGMA user_version = \(migrations.count)")
        }
    }

    /// The schema version after migrations.
    public func schemaVersion() throws -> Int {
        try read { Int(try $0.query("PRAGMA user_version").first?.first?.int ?? 0) }
    }

    // MARK: Pipelines

    private static let pipelineColumns =
        "id, namespace, name, main_branch, folder_id, description, nodes, canvas_metadata, current_version, created_at, modified_at"

    /// Parsed `nodes` documents by pipeline id, with the text they came from: a run reads its pipeline every
    /// time, and parsing the same text again was a tenth of an instant run's cost. A hit needs the stored text
    /// to be byte-for-byte the cached one, so no write path has to invalidate anything.
    private let parsedNodes = Mutex<[String: (text: String, nodes: JSONObject)]>([:])

    private func nodes(of pipelineID: String, _ text: String) throws -> JSONObject {
        if let hit = parsedNodes.withLock({ $0[pipelineID] }), hit.text == text { return hit.nodes }
        let nodes = try JSON.parse(text).objectValue ?? [:]
        parsedNodes.withLock { cache in
            if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
            cache[pipelineID] = (text, nodes)
        }
        return nodes
    }

    private func pipeline(from row: [SQLValue]) throws -> PipelineRecord {
        PipelineRecord(
            id: row[0].text ?? "", namespace: row[1].text ?? "", name: row[2].text ?? "",
            mainBranch: row[3].text ?? "", folderID: row[4].text, description: row[5].text,
            nodes: try nodes(of: row[0].text ?? "", row[6].text ?? "{}"),
            canvasMetadata: try JSON.parse(row[7].text ?? "{}"),
            createdAt: row[9].int ?? 0, modifiedAt: row[10].int ?? 0, currentVersion: row[8].text)
    }

    private static func upsertPipeline(_ p: PipelineRecord, in db: SQLiteConnection) throws {
        try db.query(
            """
            INSERT INTO pipelines (\(pipelineColumns)) VALUES (?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, folder_id = excluded.folder_id,
                description = excluded.description, nodes = excluded.nodes, canvas_metadata = excluded.canvas_metadata,
                current_version = excluded.current_version, modified_at = excluded.modified_at
            """,
            [.text(p.id), .text(p.namespace), .text(p.name), .text(p.mainBranch), p.folderID.map(SQLValue.text) ?? .null,
             p.description.map(SQLValue.text) ?? .null, .text(JSON.object(p.nodes).encodedString()),
             .text(p.canvasMetadata.encodedString()), p.currentVersion.map(SQLValue.text) ?? .null,
             .int(p.createdAt), .int(p.modifiedAt)])
    }

    /// Inserts or replaces `pipeline` (all columns).
    public func savePipeline(_ p: PipelineRecord) throws {
        try write { db in
            try Store.upsertPipeline(p, in: db)
        }
    }

    /// Saves `pipeline` and its new deploy snapshot in one transaction.
    public func savePipeline(_ p: PipelineRecord, deploying version: PipelineVersion) throws {
        try write { db in
            try Store.upsertPipeline(p, in: db)
            try Store.insertVersion(version, in: db)
        }
    }

    private static func insertVersion(_ version: PipelineVersion, in db: SQLiteConnection) throws {
        try db.query(
            "INSERT OR REPLACE INTO pipeline_versions (pipeline_id, version, nodes, canvas_metadata, description, created_at) VALUES (?,?,?,?,?,?)",
            [.text(version.pipelineID), .text(version.version), .text(JSON.object(version.nodes).encodedString()),
             .text(version.canvasMetadata.encodedString()), version.description.map(SQLValue.text) ?? .null,
             .int(version.createdAt)])
    }

    /// Reads the pipeline `id` of `namespace`, lets `change` edit it and writes it back, in one write
    /// transaction, and returns it as written (nil when there is no such pipeline; nothing is written then).
    ///
    /// Changes of one pipeline (saves, deploys, reverts, node removals) are thus applied one after the other:
    /// a read-then-save outside the transaction let two concurrent deploys take the same version (the second
    /// snapshot replacing the first one, answered to its client), let a partial save write back stale nodes or
    /// an older `current_version`, and let a save racing a delete bring the pipeline back (found by
    /// scripts/crash-drill). `change` may return a deploy snapshot, stored in the same transaction; an error it
    /// throws rolls everything back and is rethrown. It runs on the writer queue, so it must not call the store.
    public func updatePipeline(namespace: String, id: String,
                               _ change: (inout PipelineRecord) throws -> PipelineVersion?) throws -> PipelineRecord? {
        try write { db in
            guard var p = try db.query("SELECT \(Store.pipelineColumns) FROM pipelines WHERE namespace = ? AND id = ?",
                                       [.text(namespace), .text(id)]).first.map(pipeline(from:)) else { return nil }
            let snapshot = try change(&p)
            try Store.upsertPipeline(p, in: db)
            if let snapshot { try Store.insertVersion(snapshot, in: db) }
            return p
        }
    }

    /// The pipeline with `id` in `namespace`, or nil.
    public func pipeline(namespace: String, id: String) throws -> PipelineRecord? {
        try read { db in
            try db.query("SELECT \(Store.pipelineColumns) FROM pipelines WHERE namespace = ? AND id = ?",
                         [.text(namespace), .text(id)]).first.map(pipeline(from:))
        }
    }

    /// The most recently modified pipeline named `name` in `namespace` (API.md §3.2), or nil.
    public func pipeline(namespace: String, name: String) throws -> PipelineRecord? {
        try read { db in
            try db.query("""
                SELECT \(Store.pipelineColumns) FROM pipelines WHERE namespace = ? AND name = ?
                ORDER BY modified_at DESC, rowid DESC LIMIT 1
                """, [.text(namespace), .text(name)]).first.map(pipeline(from:))
        }
    }

    /// Pipelines of `namespace`, most recently modified first, optionally in one folder: identity and dates
    /// only (never the nodes, which may be megabytes).
    public func pipelineSummaries(namespace: String, folderID: String?, offset: Int, limit: Int) throws -> [PipelineSummary] {
        try read { db in
            var sql = "SELECT id, name, main_branch, created_at, modified_at FROM pipelines WHERE namespace = ?"
            var parameters: [SQLValue] = [.text(namespace)]
            if let folderID {
                sql += " AND folder_id = ?"
                parameters.append(.text(folderID))
            }
            sql += " ORDER BY modified_at DESC, rowid DESC LIMIT ? OFFSET ?"
            parameters += [.int(Int64(limit)), .int(Int64(offset))]
            return try db.query(sql, parameters).map { row in
                PipelineSummary(id: row[0].text ?? "", name: row[1].text ?? "", mainBranch: row[2].text ?? "",
                                createdAt: row[3].int ?? 0, modifiedAt: row[4].int ?? 0)
            }
        }
    }

    /// Deletes a pipeline and its versions; returns false when it did not exist. Its runs stay (they are history).
    public func deletePipeline(namespace: String, id: String) throws -> Bool {
        try write { db in
            try db.query("DELETE FROM pipelines WHERE namespace = ? AND id = ?", [.text(namespace), .text(id)])
            return db.changes > 0
        }
    }

    /// One deploy snapshot, or nil.
    public func version(pipelineID: String, version: String) throws -> PipelineVersion? {
        try read { db in
            try db.query("""
                SELECT pipeline_id, version, nodes, canvas_metadata, description, created_at
                FROM pipeline_versions WHERE pipeline_id = ? AND version = ?
                """, [.text(pipelineID), .text(version)]).first.map { row in
                PipelineVersion(pipelineID: row[0].text ?? "", version: row[1].text ?? "",
                                nodes: try JSON.parse(row[2].text ?? "{}").objectValue ?? [:],
                                canvasMetadata: try JSON.parse(row[3].text ?? "{}"),
                                description: row[4].text, createdAt: row[5].int ?? 0)
            }
        }
    }

    /// Records a share (`{"role", "user_id"?, "org_id"?, "name"?}`).
    public func addShare(pipelineID: String, _ share: JSONObject) throws {
        try write { db in
            try db.query("INSERT INTO pipeline_shares (pipeline_id, share, created_at) VALUES (?,?,?)",
                         [.text(pipelineID), .text(JSON.object(share).encodedString()), .int(wallClockMicros())])
        }
    }

    /// The recorded shares, oldest first.
    public func shares(pipelineID: String) throws -> [JSONObject] {
        try read { db in
            try db.query("SELECT share FROM pipeline_shares WHERE pipeline_id = ? ORDER BY rowid", [.text(pipelineID)])
                .compactMap { try $0[0].text.flatMap { try JSON.parse($0).objectValue } }
        }
    }

    /// Replaces the recorded shares (after an unshare).
    public func replaceShares(pipelineID: String, with shares: [JSONObject]) throws {
        try write { db in
            try db.query("DELETE FROM pipeline_shares WHERE pipeline_id = ?", [.text(pipelineID)])
            for share in shares {
                try db.query("INSERT INTO pipeline_shares (pipeline_id, share, created_at) VALUES (?,?,?)",
                             [.text(pipelineID), .text(JSON.object(share).encodedString()), .int(wallClockMicros())])
            }
        }
    }

    // MARK: Runs

    private static let runColumns =
        "id, namespace, pipeline_id, mode, version, inputs, status, result, error, partial_outputs, usage, created_at, started_at, ended_at, options, events"

    private static func encode(_ o: JSONObject?) -> SQLValue { o.map { .text(JSON.object($0).encodedString()) } ?? .null }
    private static func decodeObject(_ v: SQLValue) throws -> JSONObject? {
        guard let t = v.text else { return nil }
        return try JSON.parse(t).objectValue
    }
    private static func optionalInt(_ v: Int64?) -> SQLValue { v.map(SQLValue.int) ?? .null }

    /// A run's row and node states as bound to the upsert, encoded (JSON columns) by the caller's thread, so
    /// the one writer thread spends its time in SQLite (issue 14 item 5).
    struct EncodedRun: Sendable {
        let id: String
        let row: [SQLValue]
        let nodes: [(id: String, state: String)]

        init(_ r: RunRecord) {
            id = r.id
            row = [
                .text(r.id), .text(r.namespace), .text(r.pipelineID), .text(r.mode.rawValue), r.version.map(SQLValue.text) ?? .null,
                .text(JSON.object(r.inputs).encodedString()), .text(r.status.rawValue), Store.encode(r.result),
                r.error.map(SQLValue.text) ?? .null, Store.encode(r.partialOutputs), Store.encode(r.usage), .int(r.createdAt),
                Store.optionalInt(r.startedAt), Store.optionalInt(r.endedAt), Store.encode(r.options),
                r.events.map { .text(JSON.array($0).encodedString()) } ?? .null,
            ]
            nodes = r.nodes.map { ($0.id, $0.state.rawValue) }
        }
    }

    private static func upsertRun(_ r: RunRecord, in db: SQLiteConnection) throws {
        try upsertRun(EncodedRun(r), in: db)
    }

    private static func upsertRun(_ r: EncodedRun, in db: SQLiteConnection) throws {
        try db.query("""
            INSERT INTO runs (\(runColumns)) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT(id) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error,
                partial_outputs = excluded.partial_outputs, usage = excluded.usage, started_at = excluded.started_at,
                ended_at = excluded.ended_at, events = excluded.events
            """, r.row)
        for (position, node) in r.nodes.enumerated() {
            try db.query("""
                INSERT INTO run_nodes (run_id, position, node_id, state) VALUES (?,?,?,?)
                ON CONFLICT(run_id, node_id) DO UPDATE SET state = excluded.state
                """,
                         [.text(r.id), .int(Int64(position)), .text(node.id), .text(node.state)])
        }
    }

    /// Writes the whole state of each run (row and node states) in one transaction: a run's creation, a node
    /// transition, or its final state. Grouping several runs is allowed (SPEC §3 "Commits may be grouped").
    ///
    /// Group commit: callers on several threads at once (libmicrohttpd's workers, the scheduler) share one
    /// transaction. Each caller still returns only after the transaction holding its runs has committed.
    /// A caller that waits commits what is pending itself, on its own thread (`writeQueue.sync`), with whatever
    /// joined meanwhile: a commit never waits for a free Dispatch worker, which a burst of WebSocket handlers
    /// blocked behind this commit can exhaust (found by scripts/bench-sessions: 1,000 sessions posting at once
    /// deadlocked the daemon when a `writeQueue.async` block committed). Callers that do not wait are committed by
    /// the ``Committer`` thread, not a Dispatch worker either.
    ///
    /// - Throws: ``StoreUnavailable`` at once while writes fail for a transient reason (see ``isWritable``),
    ///   or when this commit failed for one; ``SQLiteError`` for anything else.
    public func saveRuns(_ runs: [RunRecord]) throws {
        guard !runs.isEmpty else { return }
        try health.check()
        let mine = PendingCommit(runs: runs.map(EncodedRun.init), then: nil)
        enqueue(mine, waiting: true)
        // A caller that waits drives the commit on its own thread (`writeQueue.sync`, a no-op when its group was
        // committed meanwhile): a commit never needs a free Dispatch worker, which a burst of WebSocket handlers
        // blocked behind this commit can exhaust (found by scripts/bench-sessions: 1,000 sessions posting at once
        // deadlocked the daemon when a `writeQueue.async` block did the commit).
        writeQueue.sync { commitPending() }
        mine.done.wait()
        if let error = mine.error { throw error }
    }

    /// ``saveRuns(_:)`` without waiting: `then` is called once the transaction holding `runs` has committed
    /// (with nil) or failed (with the error ``saveRuns(_:)`` would throw), on the store's write queue, so it
    /// must be quick. The caller's thread goes on at once; callers that do not wait let a group commit gather
    /// more runs than there are threads (issue 14 item 5: instant runs answer from `then`).
    public func saveRuns(_ runs: [RunRecord], then: @escaping @Sendable ((any Error)?) -> Void) {
        guard !runs.isEmpty else { return then(nil) }
        do { try health.check() } catch { return then(error) }
        enqueue(PendingCommit(runs: runs.map(EncodedRun.init), then: then), waiting: false)
    }

    /// Adds `commit` to the next group. For a caller that does not wait, the first of a group wakes the
    /// ``committer`` thread, which commits on a thread of its own (never a Dispatch worker, see ``saveRuns(_:)``).
    private func enqueue(_ commit: PendingCommit, waiting: Bool) {
        let first = pendingCommits.withLock { queue in
            queue.append(commit)
            return queue.count == 1
        }
        if first && !waiting { committer.wake() }
    }

    /// The thread that commits for callers that do not wait (``saveRuns(_:then:)``). Holds the store weakly and
    /// ends with it.
    final class Committer: @unchecked Sendable {
        // @unchecked: `store` is set once before the thread starts; the rest is an atomic and a semaphore.
        private let signal = DispatchSemaphore(value: 0)
        private let stopped = Atomic<Bool>(false)
        weak var store: Store?

        func start() {
            let thread = Thread { [self] in
                while true {
                    signal.wait()
                    if stopped.load(ordering: .acquiring) { return }
                    guard let store else { return }
                    store.writeQueue.sync { store.commitPending() }
                }
            }
            thread.name = "mockshift.store.committer"
            thread.start()
        }

        func wake() { signal.signal() }

        func stop() {
            stopped.store(true, ordering: .releasing)
            signal.signal()
        }
    }

    /// Runs waiting for the next group commit, and the callers waiting for it.
    private final class PendingCommit: @unchecked Sendable {
        // @unchecked: `error` is written on the write queue before `done` is signalled (or `then` called), read
        // after the wait.
        let runs: [EncodedRun]
        let done = DispatchSemaphore(value: 0)
        /// Called instead of signalling `done` (a caller that does not wait).
        let then: (@Sendable ((any Error)?) -> Void)?
        var error: (any Error)?
        init(runs: [EncodedRun], then: (@Sendable ((any Error)?) -> Void)?) {
            self.runs = runs
            self.then = then
        }
    }

    private let pendingCommits = Mutex<[PendingCommit]>([])

    /// On the write queue: commits everything pending in one transaction; if that fails, each caller's runs
    /// alone, so one bad record fails only its own caller.
    fileprivate func commitPending() {
        let batch = pendingCommits.withLock { queue in
            defer { queue = [] }
            return queue
        }
        guard !batch.isEmpty else { return }
        do {
            try writer.transaction { for c in batch { for r in c.runs { try Store.upsertRun(r, in: writer) } } }
            health.succeeded()
        } catch let error as SQLiteError where error.isTransient {
            // Nobody's record is at fault: every caller hears it at once (no second wait per caller).
            let unavailable = health.failed(error)
            for c in batch { c.error = unavailable }
        } catch {
            for c in batch {
                do { try writer.transaction { for r in c.runs { try Store.upsertRun(r, in: writer) } } } catch { c.error = error }
            }
        }
        var later: [PendingCommit] = []
        for c in batch {
            if c.then != nil { later.append(c) } else { c.done.signal() }
        }
        // Callers that do not wait hear on another thread: the writer goes on to the next group meanwhile.
        if !later.isEmpty {
            DispatchQueue.global().async { [later] in for c in later { c.then?(c.error) } }
        }
    }

    /// Writes `run` only if the stored run is not final yet, atomically; returns the stored run when it was
    /// already final (then nothing is written). This keeps "a final status never changes" true even if two
    /// writers race.
    public func saveRunUnlessFinal(_ run: RunRecord) throws -> RunRecord? {
        try write { db in
            if let existing = try Store.run(id: run.id, in: db), existing.status.isFinal { return existing }
            try Store.upsertRun(run, in: db)
            return nil
        }
    }

    /// Appends `entry` to the stored timeline of a final run (`GET /_mock/runs/{id}/events`), for what happens
    /// after its final commit (a webhook delivery, issue 11). Returns false, writing nothing, when the run is
    /// gone (reset, retention) or not final: a live run's timeline is the engine's and is written with it.
    @discardableResult
    public func appendRunEvent(namespace: String, id: String, _ entry: JSON) throws -> Bool {
        try write { db in
            guard let row = try db.query("SELECT status, events FROM runs WHERE id = ? AND namespace = ?",
                                         [.text(id), .text(namespace)]).first,
                  RunStatus(rawValue: row[0].text ?? "")?.isFinal == true else { return false }
            var events = try row[1].text.map { try JSON.parse($0).arrayValue ?? [] } ?? []
            events.append(entry)
            try db.query("UPDATE runs SET events = ? WHERE id = ?", [.text(JSON.array(events).encodedString()), .text(id)])
            return true
        }
    }

    private static func run(id: String, in db: SQLiteConnection) throws -> RunRecord? {
        guard let row = try db.query("SELECT \(runColumns) FROM runs WHERE id = ?", [.text(id)]).first else { return nil }
        let nodes = try db.query("SELECT node_id, state FROM run_nodes WHERE run_id = ? ORDER BY position", [.text(id)])
            .map { (id: $0[0].text ?? "", state: NodeState(rawValue: $0[1].text ?? "") ?? .pending) }
        return RunRecord(
            id: row[0].text ?? "", namespace: row[1].text ?? "", pipelineID: row[2].text ?? "",
            mode: RunMode(rawValue: row[3].text ?? "") ?? .background, version: row[4].text,
            inputs: try decodeObject(row[5]) ?? [:], status: RunStatus(rawValue: row[6].text ?? "") ?? .failed,
            result: try decodeObject(row[7]), error: row[8].text, partialOutputs: try decodeObject(row[9]),
            usage: try decodeObject(row[10]), options: try decodeObject(row[14]),
            events: try row[15].text.map { try JSON.parse($0).arrayValue ?? [] },
            createdAt: row[11].int ?? 0, startedAt: row[12].int, endedAt: row[13].int, nodes: nodes)
    }

    /// The run with `id` in `namespace`, or nil.
    /// The run `id`, whatever its namespace (start-up bookkeeping; requests go through the namespaced form).
    public func run(id: String) throws -> RunRecord? {
        try read { db in try Store.run(id: id, in: db) }
    }

    public func run(namespace: String, id: String) throws -> RunRecord? {
        try read { db in
            guard let r = try Store.run(id: id, in: db), r.namespace == namespace else { return nil }
            return r
        }
    }

    /// Runs of `namespace`, newest first, optionally of one pipeline and one status (`GET /_mock/runs`).
    public func runs(namespace: String, pipelineID: String?, status: RunStatus?, limit: Int) throws -> [RunRecord] {
        try read { db in
            var sql = "SELECT id FROM runs WHERE namespace = ?"
            var parameters: [SQLValue] = [.text(namespace)]
            if let pipelineID { sql += " AND pipeline_id = ?"; parameters.append(.text(pipelineID)) }
            if let status { sql += " AND status = ?"; parameters.append(.text(status.rawValue)) }
            sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
            parameters.append(.int(Int64(limit)))
            return try db.query(sql, parameters).compactMap { row in try row[0].text.flatMap { try Store.run(id: $0, in: db) } }
        }
    }

    /// Deletes everything of one namespace: pipelines (with their versions), runs and their node states, and its
    /// record of having been seeded (`POST /_mock/reset` without fixtures). Returns how many pipelines and runs went.
    public func deleteNamespace(_ namespace: String) throws -> (pipelines: Int, runs: Int) {
        try write { db in try Store.deleteNamespace(namespace, in: db) }
    }

    private static func deleteNamespace(_ namespace: String, in db: SQLiteConnection) throws -> (pipelines: Int, runs: Int) {
        try db.query("DELETE FROM run_nodes WHERE run_id IN (SELECT id FROM runs WHERE namespace = ?)", [.text(namespace)])
        try db.query("DELETE FROM runs WHERE namespace = ?", [.text(namespace)])
        let runs = db.changes
        try db.query("DELETE FROM pipelines WHERE namespace = ?", [.text(namespace)])
        let pipelines = db.changes
        try db.query("DELETE FROM namespaces WHERE name = ?", [.text(namespace)])
        // Chatbots go with their conversations and turns (ON DELETE CASCADE).
        try db.query("DELETE FROM chatbots WHERE namespace = ?", [.text(namespace)])
        try db.query("DELETE FROM agents WHERE namespace = ?", [.text(namespace)])
        // Sessions with their messages (ON DELETE CASCADE).
        try db.query("DELETE FROM sessions WHERE namespace = ?", [.text(namespace)])
        return (pipelines, runs)
    }

    /// Every namespace that holds a pipeline or a run, or was seeded with the fixtures.
    public func namespaces() throws -> [String] {
        try read { db in
            try db.query("SELECT namespace FROM pipelines UNION SELECT namespace FROM runs UNION SELECT name FROM namespaces")
                .compactMap { $0[0].text }
        }
    }

    /// When ``seedNamespace(_:mode:pipelines:chatbots:agents:)`` writes a namespace's starting pipelines.
    public enum SeedMode: Sendable {
        /// Only if the namespace is not recorded as seeded yet (a key seen for the first time).
        case ifNew
        /// Always, over what is there (the namespace `default` at every start: fixtures updated by name).
        case always
        /// After deleting everything of the namespace (`POST /_mock/reset`).
        case reset
    }

    /// One pipeline of a namespace's starting state: its `name`, and how to write it given the namespace's pipeline
    /// of that name (nil when there is none): the record to store (a new one, or `existing` changed) and the deploy
    /// snapshots to add or replace (same pipeline and version), if any. Called on the writer queue inside the
    /// transaction: it must not call the store.
    public struct SeedPipeline: Sendable {
        public let name: String
        public let make: @Sendable (_ existing: PipelineRecord?) throws -> (PipelineRecord, [PipelineVersion])

        public init(name: String, make: @escaping @Sendable (_ existing: PipelineRecord?) throws -> (PipelineRecord, [PipelineVersion])) {
            self.name = name
            self.make = make
        }
    }

    /// Gives `namespace` its starting pipelines, chatbots and agents (the fixtures, `serve --fixtures`; chatbots after
    /// the pipelines they link, ``SeedChatbot``; agents by name, ``SeedAgent``) in one write transaction, and
    /// records in the table `namespaces` that it was seeded, so that this survives restarts (issue 11 item 8).
    /// Each pipeline is matched by name in the namespace (the most recently modified one), so seeding never
    /// duplicates a pipeline the namespace already has under that name. With ``SeedMode/ifNew`` and a namespace
    /// recorded already, nothing is written. Returns whether the pipelines were written, and what ``SeedMode/reset``
    /// deleted first. Throws ``SQLiteError``, or what a `make` throws (then nothing is written).
    @discardableResult
    public func seedNamespace(_ namespace: String, mode: SeedMode, pipelines: [SeedPipeline],
                              chatbots: [SeedChatbot] = [], agents: [SeedAgent] = []) throws -> (seeded: Bool, deleted: (pipelines: Int, runs: Int)) {
        try write { db in
            var deleted = (pipelines: 0, runs: 0)
            if mode == .reset { deleted = try Store.deleteNamespace(namespace, in: db) }
            try db.query("INSERT INTO namespaces (name, seeded_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                         [.text(namespace), .int(wallClockMicros())])
            if mode == .ifNew && db.changes == 0 { return (false, deleted) }
            for seed in pipelines {
                let existing = try db.query("""
                    SELECT \(Store.pipelineColumns) FROM pipelines WHERE namespace = ? AND name = ?
                    ORDER BY modified_at DESC, rowid DESC LIMIT 1
                    """, [.text(namespace), .text(seed.name)]).first.map(pipeline(from:))
                let (record, versions) = try seed.make(existing)
                try Store.upsertPipeline(record, in: db)
                for version in versions { try Store.insertVersion(version, in: db) }
            }
            for seed in chatbots { try Store.seed(seed, namespace: namespace, in: db) }
            for seed in agents { try Store.seed(seed, namespace: namespace, in: db) }
            return (true, deleted)
        }
    }

    /// Marks every run that is not final as `failed` with `error` (restart recovery, SPEC §1); returns their ids.
    @discardableResult
    public func failUnfinishedRuns(error: String, at time: Int64) throws -> [String] {
        try write { db in
            let ids = try db.query("SELECT id FROM runs WHERE status IN ('in_progress', 'paused')").compactMap { $0[0].text }
            for id in ids {
                try db.query("UPDATE runs SET status = 'failed', error = ?, ended_at = ? WHERE id = ?",
                             [.text(error), .int(time), .text(id)])
                // As a run stopped while the daemon runs (issue 11 item 15): the nodes that were running failed
                // with it; those that never started say it was stopped (not `skipped`, an untaken path).
                try db.query("UPDATE run_nodes SET state = 'failed' WHERE run_id = ? AND state = 'running'", [.text(id)])
                try db.query("UPDATE run_nodes SET state = 'terminated' WHERE run_id = ? AND state = 'pending'", [.text(id)])
            }
            return ids
        }
    }

    /// Retention (`serve --keep-runs`): in every namespace holding more than `keep` finished runs, deletes the
    /// ones that finished longest ago (so a long run that just ended is kept, whenever it started) (their node states go with them) so that `keep` remain. Live runs are never
    /// touched. Returns the ids of the deleted runs.
    @discardableResult
    public func pruneFinishedRuns(keepPerNamespace keep: Int) throws -> [String] {
        guard keep > 0 else { return [] }
        return try write { db in
            let crowded = try db.query("""
                SELECT namespace FROM runs WHERE status IN ('completed', 'failed', 'terminated')
                GROUP BY namespace HAVING COUNT(*) > ?
                """, [.int(Int64(keep))]).compactMap { $0[0].text }
            var deleted: [String] = []
            for namespace in crowded {
                let ids = try db.query("""
                    SELECT id FROM runs WHERE namespace = ? AND status IN ('completed', 'failed', 'terminated')
                    ORDER BY COALESCE(ended_at, created_at) DESC, rowid DESC LIMIT -1 OFFSET ?
                    """, [.text(namespace), .int(Int64(keep))]).compactMap { $0[0].text }
                for id in ids { try db.query("DELETE FROM runs WHERE id = ?", [.text(id)]) }
                deleted += ids
            }
            return deleted
        }
    }

    /// Number of runs per status, of one namespace (`GET /_mock/stats`, through the namespace index) or of every
    /// namespace (`nil`: tests).
    public func runCounts(namespace: String? = nil) throws -> [RunStatus: Int] {
        try read { db in
            var counts: [RunStatus: Int] = [:]
            let rows = try namespace.map {
                try db.query("SELECT status, COUNT(*) FROM runs WHERE namespace = ? GROUP BY status", [.text($0)])
            } ?? db.query("SELECT status, COUNT(*) FROM runs GROUP BY status")
            for row in rows {
                if let s = RunStatus(rawValue: row[0].text ?? "") { counts[s] = Int(row[1].int ?? 0) }
            }
            return counts
        }
    }
}
