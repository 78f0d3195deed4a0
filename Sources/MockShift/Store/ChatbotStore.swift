/// Chatbots, conversations and turns in SQLite (SPEC §9, issue 12; schema: migration 9 in ``Store/migrations``).
/// Every query names the namespace, so another key's chatbots and conversations do not exist for a caller.
extension Store {
    // MARK: Chatbots

    private static let chatbotColumns =
        "id, namespace, name, description, pipeline_id, pipeline_version, input, output, deployed, configs, created_at, modified_at"

    private static func chatbot(from row: [SQLValue]) throws -> ChatbotRecord {
        ChatbotRecord(
            id: row[0].text ?? "", namespace: row[1].text ?? "", name: row[2].text ?? "", description: row[3].text ?? "",
            pipelineID: row[4].text ?? "", pipelineVersion: row[5].text, input: row[6].text ?? "", output: row[7].text ?? "",
            deployed: (row[8].int ?? 0) != 0, configs: try JSON.parse(row[9].text ?? "{}").objectValue ?? [:],
            createdAt: row[10].int ?? 0, modifiedAt: row[11].int ?? 0)
    }

    /// Inserts a new chatbot.
    public func saveChatbot(_ b: ChatbotRecord) throws {
        try write { db in
            try db.query("INSERT INTO chatbots (\(Store.chatbotColumns)) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         [.text(b.id), .text(b.namespace), .text(b.name), .text(b.description), .text(b.pipelineID),
                          b.pipelineVersion.map(SQLValue.text) ?? .null, .text(b.input), .text(b.output),
                          .int(b.deployed ? 1 : 0), .text(JSON.object(b.configs).encodedString()),
                          .int(b.createdAt), .int(b.modifiedAt)])
        }
    }

    /// The chatbot `id` of `namespace`, or nil.
    public func chatbot(namespace: String, id: String) throws -> ChatbotRecord? {
        try read { db in
            try db.query("SELECT \(Store.chatbotColumns) FROM chatbots WHERE namespace = ? AND id = ?",
                         [.text(namespace), .text(id)]).first.map(Store.chatbot(from:))
        }
    }

    /// The most recently modified chatbot named `name` in `namespace`, or nil.
    public func chatbot(namespace: String, name: String) throws -> ChatbotRecord? {
        try read { db in
            try db.query("""
                SELECT \(Store.chatbotColumns) FROM chatbots WHERE namespace = ? AND name = ?
                ORDER BY modified_at DESC, rowid DESC LIMIT 1
                """, [.text(namespace), .text(name)]).first.map(Store.chatbot(from:))
        }
    }

    /// Chatbots of `namespace`, newest first.
    public func chatbots(namespace: String, offset: Int, limit: Int) throws -> [ChatbotRecord] {
        try read { db in
            try db.query("""
                SELECT \(Store.chatbotColumns) FROM chatbots WHERE namespace = ?
                ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?
                """, [.text(namespace), .int(Int64(limit)), .int(Int64(offset))]).map(Store.chatbot(from:))
        }
    }

    /// Chatbots of `namespace`, newest first, each with its number of conversations and stored turns and the
    /// newest conversation start or turn end (the dashboard's chatbot list: one query, counted by SQLite).
    public func chatbotActivity(namespace: String, offset: Int, limit: Int) throws -> [ChatbotActivity] {
        let columns = Store.chatbotColumns.split(separator: ",").map { "b." + $0.filter { $0 != " " } }
        return try read { db in
            try db.query("""
                SELECT \(columns.joined(separator: ", ")),
                    (SELECT COUNT(*) FROM conversations c WHERE c.chatbot_id = b.id),
                    (SELECT COUNT(*) FROM conversation_turns t JOIN conversations c ON c.id = t.conversation_id
                        WHERE c.chatbot_id = b.id),
                    (SELECT MAX(c.created_at) FROM conversations c WHERE c.chatbot_id = b.id),
                    (SELECT MAX(t.ended_at) FROM conversation_turns t JOIN conversations c ON c.id = t.conversation_id
                        WHERE c.chatbot_id = b.id)
                FROM chatbots b WHERE b.namespace = ?
                ORDER BY b.created_at DESC, b.rowid DESC LIMIT ? OFFSET ?
                """, [.text(namespace), .int(Int64(limit)), .int(Int64(offset))]).map { row in
                let n = columns.count
                let last = [row[n + 2].int, row[n + 3].int].compactMap { $0 }.max()
                return ChatbotActivity(chatbot: try Store.chatbot(from: row), conversations: Int(row[n].int ?? 0),
                                       turns: Int(row[n + 1].int ?? 0), lastActivity: last)
            }
        }
    }

    /// Deletes a chatbot with its conversations and their turns; false when it did not exist.
    public func deleteChatbot(namespace: String, id: String) throws -> Bool {
        try write { db in
            try db.query("DELETE FROM chatbots WHERE namespace = ? AND id = ?", [.text(namespace), .text(id)])
            return db.changes > 0
        }
    }

    // MARK: Conversations

    /// Creates an empty conversation of `chatbotID`.
    public func createConversation(namespace: String, id: String, chatbotID: String, at micros: Int64) throws {
        try write { db in
            try db.query("INSERT INTO conversations (id, namespace, chatbot_id, created_at) VALUES (?,?,?,?)",
                         [.text(id), .text(namespace), .text(chatbotID), .int(micros)])
        }
    }

    /// Deletes a conversation and its turns (a new conversation whose first run could not start).
    public func deleteConversation(namespace: String, id: String) throws {
        try write { db in
            try db.query("DELETE FROM conversations WHERE namespace = ? AND id = ?", [.text(namespace), .text(id)])
        }
    }

    /// Appends a finished turn to conversation `id`, after its last one. Returns false (storing nothing) when the
    /// conversation is gone (its chatbot was deleted, or the namespace reset, while the turn ran).
    @discardableResult
    public func appendTurn(conversationID id: String, _ turn: ChatTurn) throws -> Bool {
        try write { db in
            try db.query("""
                INSERT INTO conversation_turns
                    (conversation_id, position, user_text, answer, run_id, outcome, error, created_at, ended_at)
                SELECT ?, COALESCE((SELECT MAX(position) + 1 FROM conversation_turns WHERE conversation_id = ?), 0),
                       ?, ?, ?, ?, ?, ?, ?
                WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?)
                """, [.text(id), .text(id), .text(turn.userText), .text(turn.answer), .text(turn.runID),
                      .text(turn.outcome.rawValue), turn.error.map(SQLValue.text) ?? .null, .int(turn.createdAt),
                      .int(turn.endedAt), .text(id)])
            return db.changes > 0
        }
    }

    /// Conversation `id` of `namespace` with its turns, oldest first; nil when there is none.
    public func conversation(namespace: String, id: String) throws -> ConversationRecord? {
        try read { db in
            guard let row = try db.query("SELECT id, chatbot_id, created_at FROM conversations WHERE namespace = ? AND id = ?",
                                         [.text(namespace), .text(id)]).first else { return nil }
            return ConversationRecord(id: row[0].text ?? "", namespace: namespace, chatbotID: row[1].text ?? "",
                                      createdAt: row[2].int ?? 0, turns: try Store.turns(of: id, in: db))
        }
    }

    /// The conversations of `namespace` (only `chatbotID`'s when given), oldest first, with their turns.
    public func conversations(namespace: String, chatbotID: String?) throws -> [ConversationRecord] {
        try read { db in
            var sql = "SELECT id, chatbot_id, created_at FROM conversations WHERE namespace = ?"
            var parameters: [SQLValue] = [.text(namespace)]
            if let chatbotID {
                sql += " AND chatbot_id = ?"
                parameters.append(.text(chatbotID))
            }
            sql += " ORDER BY created_at, rowid"
            return try db.query(sql, parameters).map { row in
                ConversationRecord(id: row[0].text ?? "", namespace: namespace, chatbotID: row[1].text ?? "",
                                   createdAt: row[2].int ?? 0, turns: try Store.turns(of: row[0].text ?? "", in: db))
            }
        }
    }

    /// The chatbot and conversation a stored turn's run belongs to, in `namespace`; nil for any other run.
    public func turnOwner(namespace: String, runID: String) throws -> (chatbotID: String, conversationID: String)? {
        try read { db in
            try db.query("""
                SELECT c.chatbot_id, c.id FROM conversation_turns t JOIN conversations c ON c.id = t.conversation_id
                WHERE t.run_id = ? AND c.namespace = ? LIMIT 1
                """, [.text(runID), .text(namespace)]).first.map { ($0[0].text ?? "", $0[1].text ?? "") }
        }
    }

    private static func turns(of conversationID: String, in db: SQLiteConnection) throws -> [ChatTurn] {
        try db.query("""
            SELECT user_text, answer, run_id, outcome, error, created_at, ended_at FROM conversation_turns
            WHERE conversation_id = ? ORDER BY position
            """, [.text(conversationID)]).map { row in
            ChatTurn(userText: row[0].text ?? "", answer: row[1].text ?? "", runID: row[2].text ?? "",
                     outcome: TurnOutcome(rawValue: row[3].text ?? "") ?? .failed, error: row[4].text,
                     createdAt: row[5].int ?? 0, endedAt: row[6].int ?? 0)
        }
    }
}
