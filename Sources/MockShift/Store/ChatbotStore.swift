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

    /// One chatbot of a namespace's starting state (`serve --fixtures`, issue 12 item 6): its `name`, the name of
    /// the pipeline it links (a fixture pipeline, seeded in the same transaction), and how to write it given the
    /// namespace's chatbot of that name (nil when there is none) and the pipeline's id. Called on the writer queue
    /// inside the transaction: it must not call the store.
    public struct SeedChatbot: Sendable {
        public let name: String
        public let pipelineName: String
        public let make: @Sendable (_ existing: ChatbotRecord?, _ pipelineID: String) -> ChatbotRecord

        public init(name: String, pipelineName: String,
                    make: @escaping @Sendable (_ existing: ChatbotRecord?, _ pipelineID: String) -> ChatbotRecord) {
            self.name = name
            self.pipelineName = pipelineName
            self.make = make
        }
    }

    /// Writes one seeded chatbot over the namespace's chatbot of the same name (keeping its id, so its
    /// conversations stay) or as a new one. A pipeline name the namespace lacks skips it: fixtures are checked
    /// at load, so that happens only if a fixture pipeline failed to be written, and then the transaction fails.
    static func seed(_ seed: SeedChatbot, namespace: String, in db: SQLiteConnection) throws {
        guard let pipelineID = try db.query("""
            SELECT id FROM pipelines WHERE namespace = ? AND name = ? ORDER BY modified_at DESC, rowid DESC LIMIT 1
            """, [.text(namespace), .text(seed.pipelineName)]).first?[0].text else { return }
        let existing = try db.query("""
            SELECT \(Store.chatbotColumns) FROM chatbots WHERE namespace = ? AND name = ?
            ORDER BY modified_at DESC, rowid DESC LIMIT 1
            """, [.text(namespace), .text(seed.name)]).first.map(Store.chatbot(from:))
        let b = seed.make(existing, pipelineID)
        try db.query("""
            INSERT INTO chatbots (\(Store.chatbotColumns)) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT(id) DO UPDATE SET name = excluded.name, description = excluded.description,
                pipeline_id = excluded.pipeline_id, pipeline_version = excluded.pipeline_version,
                input = excluded.input, output = excluded.output, deployed = excluded.deployed,
                configs = excluded.configs, modified_at = excluded.modified_at
            """, [.text(b.id), .text(namespace), .text(b.name), .text(b.description), .text(b.pipelineID),
                  b.pipelineVersion.map(SQLValue.text) ?? .null, .text(b.input), .text(b.output),
                  .int(b.deployed ? 1 : 0), .text(JSON.object(b.configs).encodedString()),
                  .int(b.createdAt), .int(b.modifiedAt)])
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
            guard let row = try db.query("""
                SELECT id, chatbot_id, created_at, knowledge_base_id FROM conversations WHERE namespace = ? AND id = ?
                """, [.text(namespace), .text(id)]).first else { return nil }
            return try Store.conversation(from: row, namespace: namespace, in: db)
        }
    }

    /// The conversations of `namespace` (only `chatbotID`'s when given), oldest first, with their turns.
    public func conversations(namespace: String, chatbotID: String?) throws -> [ConversationRecord] {
        try read { db in
            var sql = "SELECT id, chatbot_id, created_at, knowledge_base_id FROM conversations WHERE namespace = ?"
            var parameters: [SQLValue] = [.text(namespace)]
            if let chatbotID {
                sql += " AND chatbot_id = ?"
                parameters.append(.text(chatbotID))
            }
            sql += " ORDER BY created_at, rowid"
            return try db.query(sql, parameters).map { row in try Store.conversation(from: row, namespace: namespace, in: db) }
        }
    }

    /// A conversation row (`id, chatbot_id, created_at, knowledge_base_id`) with its turns and its files' metadata.
    private static func conversation(from row: [SQLValue], namespace: String, in db: SQLiteConnection) throws -> ConversationRecord {
        let id = row[0].text ?? ""
        return ConversationRecord(id: id, namespace: namespace, chatbotID: row[1].text ?? "", createdAt: row[2].int ?? 0,
                                  turns: try Store.turns(of: id, in: db), knowledgeBaseID: row[3].text,
                                  files: try Store.files(of: id, withBytes: false, in: db))
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

    // MARK: Conversation files

    /// What ``addConversationFiles(namespace:chatbotID:conversationID:create:knowledgeBaseID:files:at:)`` did.
    public enum FileUpload: Equatable, Sendable {
        /// Stored; the conversation's knowledge base id (the one it had, or the one given, on its first upload).
        case stored(knowledgeBaseID: String)
        /// The chatbot does not exist in the namespace (nothing stored).
        case chatbotNotFound
        /// The conversation does not exist in the namespace, or belongs to another chatbot (nothing stored).
        case conversationNotFound
    }

    /// Stores `files` (each with its ``ConversationFile/bytes``) after the conversation's earlier files, in one
    /// transaction with the checks, so a chatbot deleted or a namespace reset meanwhile stores nothing. `create`:
    /// the conversation `conversationID` is new (an upload without `conversation_id`) and is created for
    /// `chatbotID` first, created at `micros`. `knowledgeBaseID` becomes the conversation's when it has none yet.
    public func addConversationFiles(namespace: String, chatbotID: String, conversationID: String, create: Bool,
                                     knowledgeBaseID: String, files: [ConversationFile], at micros: Int64) throws -> FileUpload {
        try write { db in
            guard try !db.query("SELECT 1 FROM chatbots WHERE namespace = ? AND id = ?",
                                [.text(namespace), .text(chatbotID)]).isEmpty else { return .chatbotNotFound }
            var kb = knowledgeBaseID
            if create {
                try db.query("""
                    INSERT INTO conversations (id, namespace, chatbot_id, created_at, knowledge_base_id) VALUES (?,?,?,?,?)
                    """, [.text(conversationID), .text(namespace), .text(chatbotID), .int(micros), .text(kb)])
            } else {
                guard let row = try db.query("""
                    SELECT knowledge_base_id FROM conversations WHERE namespace = ? AND id = ? AND chatbot_id = ?
                    """, [.text(namespace), .text(conversationID), .text(chatbotID)]).first else { return .conversationNotFound }
                if let existing = row[0].text {
                    kb = existing
                } else {
                    try db.query("UPDATE conversations SET knowledge_base_id = ? WHERE id = ?", [.text(kb), .text(conversationID)])
                }
            }
            let next = try db.query("SELECT COALESCE(MAX(position) + 1, 0) FROM conversation_files WHERE conversation_id = ?",
                                    [.text(conversationID)]).first?.first?.int ?? 0
            for (offset, file) in files.enumerated() {
                try db.query("""
                    INSERT INTO conversation_files (document_id, namespace, conversation_id, position, name, mime_type, size,
                                                    sha256, bytes, message_index, created_at)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?)
                    """, [.text(file.documentID), .text(namespace), .text(conversationID), .int(next + Int64(offset)),
                          .text(file.name), .text(file.mimeType), .int(Int64(file.size)), .text(file.sha256),
                          .blob(file.bytes ?? []), .int(file.messageIndex), .int(file.createdAt)])
            }
            return .stored(knowledgeBaseID: kb)
        }
    }

    /// The files of conversation `conversationID` in `namespace`, in upload order, with their bytes (what a chatbot
    /// turn's `chat_file_reader` nodes read); empty for an unknown conversation.
    public func conversationFiles(namespace: String, conversationID: String) throws -> [ConversationFile] {
        try read { db in
            guard try !db.query("SELECT 1 FROM conversations WHERE namespace = ? AND id = ?",
                                [.text(namespace), .text(conversationID)]).isEmpty else { return [] }
            return try Store.files(of: conversationID, withBytes: true, in: db)
        }
    }

    private static func files(of conversationID: String, withBytes: Bool, in db: SQLiteConnection) throws -> [ConversationFile] {
        try db.query("""
            SELECT document_id, name, mime_type, size, sha256, message_index, created_at\(withBytes ? ", bytes" : "")
            FROM conversation_files WHERE conversation_id = ? ORDER BY position
            """, [.text(conversationID)]).map { row in
            ConversationFile(documentID: row[0].text ?? "", name: row[1].text ?? "", mimeType: row[2].text ?? "",
                             size: Int(row[3].int ?? 0), sha256: row[4].text ?? "", messageIndex: row[5].int ?? 0,
                             createdAt: row[6].int ?? 0, bytes: withBytes ? (row[7].blob ?? []) : nil)
        }
    }
}
