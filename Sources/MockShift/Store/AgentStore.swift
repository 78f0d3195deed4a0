/// Agents in SQLite (SPEC §11, issue 13; schema: migration 11 in ``Store/migrations``). Every query names the
/// namespace, so another key's agents do not exist for a caller.
extension Store {
    private static let agentColumns = "id, namespace, name, document, current_version, created_at, modified_at"

    private static func agent(from row: [SQLValue]) throws -> AgentRecord {
        AgentRecord(id: row[0].text ?? "", namespace: row[1].text ?? "", name: row[2].text ?? "",
                    document: try JSON.parse(row[3].text ?? "{}").objectValue ?? [:], currentVersion: row[4].text,
                    createdAt: row[5].int ?? 0, modifiedAt: row[6].int ?? 0)
    }

    /// Inserts a new agent.
    public func insertAgent(_ a: AgentRecord) throws {
        try write { db in
            try db.query("INSERT INTO agents (\(Store.agentColumns)) VALUES (?,?,?,?,?,?,?)",
                         [.text(a.id), .text(a.namespace), .text(a.name), .text(JSON.object(a.document).encodedString()),
                          a.currentVersion.map(SQLValue.text) ?? .null, .int(a.createdAt), .int(a.modifiedAt)])
        }
    }

    /// `POST /update/agent/{id}`: replaces agent `id`'s name and document, in one transaction with its deploy
    /// snapshot when `nextVersion` is given (it maps the current version to the new one, SPEC §8), so two
    /// concurrent deploys never take the same version. Returns the saved agent, nil when it does not exist.
    public func updateAgent(namespace: String, id: String, name: String, document: JSONObject, at micros: Int64,
                            nextVersion: (@Sendable (String?) -> String)?) throws -> AgentRecord? {
        try write { db in
            guard var agent = try db.query("SELECT \(Store.agentColumns) FROM agents WHERE namespace = ? AND id = ?",
                                           [.text(namespace), .text(id)]).first.map(Store.agent(from:)) else { return nil }
            agent.name = name
            agent.document = document
            agent.modifiedAt = max(micros, agent.modifiedAt + 1)
            let encoded = JSON.object(document).encodedString()
            if let nextVersion {
                let version = nextVersion(agent.currentVersion)
                agent.currentVersion = version
                try db.query("INSERT OR REPLACE INTO agent_versions (agent_id, version, document, created_at) VALUES (?,?,?,?)",
                             [.text(id), .text(version), .text(encoded), .int(agent.modifiedAt)])
            }
            try db.query("UPDATE agents SET name = ?, document = ?, current_version = ?, modified_at = ? WHERE id = ?",
                         [.text(name), .text(encoded), agent.currentVersion.map(SQLValue.text) ?? .null,
                          .int(agent.modifiedAt), .text(id)])
            return agent
        }
    }

    /// The agent `id` of `namespace`, or nil.
    public func agent(namespace: String, id: String) throws -> AgentRecord? {
        try read { db in
            try db.query("SELECT \(Store.agentColumns) FROM agents WHERE namespace = ? AND id = ?",
                         [.text(namespace), .text(id)]).first.map(Store.agent(from:))
        }
    }

    /// The most recently modified agent named `name` in `namespace`, or nil.
    public func agent(namespace: String, name: String) throws -> AgentRecord? {
        try read { db in
            try db.query("""
                SELECT \(Store.agentColumns) FROM agents WHERE namespace = ? AND name = ?
                ORDER BY modified_at DESC, rowid DESC LIMIT 1
                """, [.text(namespace), .text(name)]).first.map(Store.agent(from:))
        }
    }

    /// Agents of `namespace`, newest first.
    public func agents(namespace: String, offset: Int, limit: Int) throws -> [AgentRecord] {
        try read { db in
            try db.query("""
                SELECT \(Store.agentColumns) FROM agents WHERE namespace = ?
                ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?
                """, [.text(namespace), .int(Int64(limit)), .int(Int64(offset))]).map(Store.agent(from:))
        }
    }

    /// The versions agent `id` was deployed as, oldest first.
    public func agentVersions(id: String) throws -> [String] {
        try read { db in
            try db.query("SELECT version FROM agent_versions WHERE agent_id = ? ORDER BY created_at, rowid",
                         [.text(id)]).compactMap { $0[0].text }
        }
    }

    /// One agent of a namespace's starting state (`serve --fixtures`, issue 13 item 5): its `name`, and how to write it
    /// given the namespace's agent of that name (nil when there is none). Called on the writer queue inside the
    /// seeding transaction: it must not call the store.
    public struct SeedAgent: Sendable {
        public let name: String
        public let make: @Sendable (_ existing: AgentRecord?) -> AgentRecord

        public init(name: String, make: @escaping @Sendable (_ existing: AgentRecord?) -> AgentRecord) {
            self.name = name
            self.make = make
        }
    }

    /// Writes one seeded agent over the namespace's agent of the same name (the most recently modified; keeping its
    /// id, so sessions and code holding the id still find it) or as a new one.
    static func seed(_ seed: SeedAgent, namespace: String, in db: SQLiteConnection) throws {
        let existing = try db.query("""
            SELECT \(Store.agentColumns) FROM agents WHERE namespace = ? AND name = ?
            ORDER BY modified_at DESC, rowid DESC LIMIT 1
            """, [.text(namespace), .text(seed.name)]).first.map(Store.agent(from:))
        let a = seed.make(existing)
        try db.query("""
            INSERT INTO agents (\(Store.agentColumns)) VALUES (?,?,?,?,?,?,?)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, document = excluded.document,
                current_version = excluded.current_version, modified_at = excluded.modified_at
            """, [.text(a.id), .text(namespace), .text(a.name), .text(JSON.object(a.document).encodedString()),
                  a.currentVersion.map(SQLValue.text) ?? .null, .int(a.createdAt), .int(a.modifiedAt)])
    }

    /// Deletes an agent with its versions; false when it did not exist.
    public func deleteAgent(namespace: String, id: String) throws -> Bool {
        try write { db in
            try db.query("DELETE FROM agents WHERE namespace = ? AND id = ?", [.text(namespace), .text(id)])
            return db.changes > 0
        }
    }
}
