/// WebSocket sessions and their messages in SQLite (SPEC §10, issue 13; schema: migration 12 in
/// ``Store/migrations``). Every query names the namespace, so another key's sessions do not exist for a caller.
extension Store {
    private static let sessionColumns = "id, namespace, owner_type, owner_id, status, created_at, terminated_at"

    private static func session(from row: [SQLValue]) -> SessionRecord {
        SessionRecord(id: row[0].text ?? "", namespace: row[1].text ?? "",
                      ownerType: SessionRecord.OwnerType(rawValue: row[2].text ?? "") ?? .chatbot,
                      ownerID: row[3].text ?? "", status: SessionRecord.Status(rawValue: row[4].text ?? "") ?? .open,
                      createdAt: row[5].int ?? 0, terminatedAt: row[6].int)
    }

    /// Stores a new session.
    public func createSession(_ session: SessionRecord) throws {
        try write { db in
            try db.query("INSERT INTO sessions (\(Store.sessionColumns)) VALUES (?,?,?,?,?,?,?)",
                         [.text(session.id), .text(session.namespace), .text(session.ownerType.rawValue),
                          .text(session.ownerID), .text(session.status.rawValue), .int(session.createdAt),
                          session.terminatedAt.map(SQLValue.int) ?? .null])
        }
    }

    /// Session `id` of `namespace`, or nil (unknown, or another key's).
    public func session(namespace: String, id: String) throws -> SessionRecord? {
        try read { db in
            try db.query("SELECT \(Store.sessionColumns) FROM sessions WHERE namespace = ? AND id = ?",
                         [.text(namespace), .text(id)]).first.map(Store.session(from:))
        }
    }

    /// Sessions of `namespace`, oldest first, each with how many messages it has stored (`GET /_mock/sessions`,
    /// issue 13 item 5); only those of owner `ownerID` and in `status` when given.
    public func sessions(namespace: String, ownerID: String? = nil,
                         status: SessionRecord.Status? = nil) throws -> [(session: SessionRecord, messages: Int)] {
        try read { db in
            var sql = """
                SELECT \(Store.sessionColumns), (SELECT COUNT(*) FROM session_messages m WHERE m.session_id = sessions.id)
                FROM sessions WHERE namespace = ?
                """
            var parameters: [SQLValue] = [.text(namespace)]
            if let ownerID { sql += " AND owner_id = ?"; parameters.append(.text(ownerID)) }
            if let status { sql += " AND status = ?"; parameters.append(.text(status.rawValue)) }
            sql += " ORDER BY created_at, rowid"
            return try db.query(sql, parameters).map { row in (Store.session(from: row), Int(row[7].int ?? 0)) }
        }
    }

    /// Marks session `id` terminated at `micros` (a terminated one keeps its first time). Returns the session as
    /// stored afterwards, or nil when `namespace` has no such session.
    public func terminateSession(namespace: String, id: String, at micros: Int64) throws -> SessionRecord? {
        try write { db in
            try db.query("""
                UPDATE sessions SET status = 'terminated', terminated_at = ?
                WHERE namespace = ? AND id = ? AND status != 'terminated'
                """, [.int(micros), .text(namespace), .text(id)])
            return try db.query("SELECT \(Store.sessionColumns) FROM sessions WHERE namespace = ? AND id = ?",
                                [.text(namespace), .text(id)]).first.map(Store.session(from:))
        }
    }

    /// Appends a message after the session's last one. Returns false (storing nothing) when the session is gone.
    @discardableResult
    public func appendSessionMessage(_ message: SessionMessageRecord) throws -> Bool {
        try write { db in
            try db.query("""
                INSERT INTO session_messages (session_id, position, id, sender, content, created_at)
                SELECT ?, COALESCE((SELECT MAX(position) + 1 FROM session_messages WHERE session_id = ?), 0), ?, ?, ?, ?
                WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?)
                """, [.text(message.sessionID), .text(message.sessionID), .text(message.id),
                      .text(JSON.object(message.sender).encodedString()), .text(JSON.object(message.content).encodedString()),
                      .int(message.createdAt), .text(message.sessionID)])
            return db.changes > 0
        }
    }

    /// The messages of session `id` of `namespace`, oldest first (none for an unknown session).
    public func sessionMessages(namespace: String, sessionID id: String) throws -> [SessionMessageRecord] {
        try read { db in
            try db.query("""
                SELECT m.id, m.sender, m.content, m.created_at FROM session_messages m
                JOIN sessions s ON s.id = m.session_id
                WHERE s.namespace = ? AND m.session_id = ? ORDER BY m.position
                """, [.text(namespace), .text(id)]).map { row in
                SessionMessageRecord(id: row[0].text ?? "", sessionID: id,
                                     sender: (try? JSON.parse(row[1].text ?? "{}"))?.objectValue ?? [:],
                                     content: (try? JSON.parse(row[2].text ?? "{}"))?.objectValue ?? [:],
                                     createdAt: row[3].int ?? 0)
            }
        }
    }
}

extension Store {
    /// After a restart (SPEC §10: "a turn cut by the restart is stored as failed with `interrupted`"): every
    /// session whose last message is the user's, or an agent's tool call or approval request (SPEC §11: the answer
    /// of a turn is always its last message), gets an answer from its owner with content
    /// `{"type":"error_message","error":"interrupted","status":"Failed"}`. Returns how many.
    @discardableResult
    public func failInterruptedSessionTurns(at micros: Int64, newID: () -> String) throws -> Int {
        try write { db in
            let open = try db.query("""
                SELECT s.id, s.owner_type, s.owner_id FROM sessions s
                WHERE (SELECT json_extract(m.sender, '$.user_id') IS NOT NULL
                              OR json_extract(m.content, '$.type') IN ('tool_call', 'tool_call_approval')
                       FROM session_messages m WHERE m.session_id = s.id ORDER BY m.position DESC LIMIT 1) = 1
                """, [])
            for row in open {
                let id = row[0].text ?? "", ownerType = row[1].text ?? "", ownerID = row[2].text ?? ""
                let sender: JSON = ["object_id": .string(ownerID), "object_type": .string(ownerType)]
                let content: JSON = ["type": "error_message", "error": "interrupted", "value": "", "status": "Failed"]
                try db.query("""
                    INSERT INTO session_messages (session_id, position, id, sender, content, created_at)
                    SELECT ?, COALESCE((SELECT MAX(position) + 1 FROM session_messages WHERE session_id = ?), 0), ?, ?, ?, ?
                    """, [.text(id), .text(id), .text(newID()), .text(sender.encodedString()), .text(content.encodedString()),
                          .int(micros)])
            }
            return open.count
        }
    }
}
