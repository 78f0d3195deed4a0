import Foundation
import MockShiftHTTP

/// Files uploaded to chatbot conversations (issue 12 item 5, SPEC §9 "Files", API-CHAT §1.2 and §1.8 row 2): the
/// upload route, and what a turn hands its `chat_file_reader` nodes. The files are stored with their conversation
/// (``Store/addConversationFiles(namespace:chatbotID:conversationID:create:knowledgeBaseID:files:at:)``), so they
/// go with it when its chatbot is deleted or the key reset, and survive a restart.
enum ChatFileHandlers {
    /// The largest file SQLite stores in one value (its default `SQLITE_MAX_LENGTH`, 10^9 bytes). Only a daemon
    /// started with a body limit near 1 GiB (`--max-body-mb 1024`) can receive one larger: 413.
    static let largestFile = 1_000_000_000

    /// One file of an upload, read from the body.
    struct Incoming {
        var name: String
        var mimeType: String
        var bytes: [UInt8]
    }

    /// `POST /chatbot/{id}/upload` (`chatbot.upload_files`, `aupload_files`). Bodies:
    /// - multipart as the SDK sends it: one part named `files` per file (its `filename` and `Content-Type`; a part
    ///   without a filename is named `file`, one without a type gets the type its name suggests), plus the fields
    ///   `message_index` (the SDK sends `"0"` by default) and `conversation_id` (optional);
    /// - JSON as the docs describe it: `{"files":[{"type":"file","raw_bytes":BASE64,"name"?,"mime_type"?}],
    ///   "conversation_id"?, "message_index"?}` (`name`/`mime_type` may also sit in a `metadata` object, as the
    ///   SDK's session encoding puts them).
    ///
    /// No `conversation_id` (or `""`) creates a conversation of the chatbot, as a run without one does. Answers
    /// `{"status":"success","errors":[],"conversation_id":C,"knowledge_base_id":K,"uploaded_files":[{"name",
    /// "mime_type","size","document_id"}]}` (the SDK docstring and the docs), K being the conversation's own
    /// "temporary knowledge base" id, the same for every upload to it.
    ///
    /// Errors: 404 for an unknown chatbot, or a conversation that is unknown, another chatbot's or another key's;
    /// 400 for no files at all (what the SDK sends for `file_paths=[]`: JSON `{"message_index":0}`; SPEC §9),
    /// invalid base64 (naming the file's index), a file part not named `files`, or a `message_index` that is no
    /// whole number >= 0; 413 for one file over ``largestFile`` (the transport already answers 413 for a body over
    /// `--max-body-mb`). Nothing is stored unless the whole upload is.
    static func upload(_ c: HandlerContext) throws -> Reply {
        let body = try c.bodyObject()
        let chatbotID = c.parameter("id")
        guard try c.app.store.chatbot(namespace: c.namespace, id: chatbotID) != nil else {
            throw APIError(.notFound, "Chatbot not found")
        }
        let incoming = try files(c.request, body)
        guard !incoming.isEmpty else {
            throw APIError(.badRequest, "no files to upload: send multipart parts named 'files', or JSON files[{\"type\":\"file\",\"raw_bytes\":BASE64}]")
        }
        for (index, file) in incoming.enumerated() where file.bytes.count > largestFile {
            throw APIError(.payloadTooLarge, "files[\(index)] (\(file.name)) has \(file.bytes.count) bytes: at most \(largestFile) are stored")
        }
        let messageIndex = try self.messageIndex(body)
        let requested = try body.string("conversation_id") ?? ""
        let conversationID = requested.isEmpty ? IDs.make() : requested
        let now = wallClockMicros()
        let stored = incoming.map {
            ConversationFile(name: $0.name, mimeType: $0.mimeType, bytes: $0.bytes, messageIndex: messageIndex, createdAt: now)
        }
        let outcome = try c.app.store.addConversationFiles(
            namespace: c.namespace, chatbotID: chatbotID, conversationID: conversationID, create: requested.isEmpty,
            knowledgeBaseID: IDs.make(), files: stored, at: now)
        switch outcome {
        case .chatbotNotFound:  // deleted (or the key reset) since the lookup above
            throw APIError(.notFound, "Chatbot not found")
        case .conversationNotFound:
            throw APIError(.notFound, "Conversation \(requested) not found")
        case let .stored(knowledgeBaseID):
            let uploaded = stored.map { file -> JSON in
                ["name": .string(file.name), "mime_type": .string(file.mimeType), "size": .int(Int64(file.size)),
                 "document_id": .string(file.documentID)]
            }
            return .json(.ok, ["status": "success", "errors": [], "conversation_id": .string(conversationID),
                               "knowledge_base_id": .string(knowledgeBaseID), "uploaded_files": .array(uploaded)])
        }
    }

    /// The files of the body, in the order sent: the form's parts named `files`, or the JSON `files` list.
    static func files(_ request: Request, _ body: JSONObject) throws -> [Incoming] {
        if let fields = request.formFields {
            var found: [Incoming] = []
            for field in fields {
                guard field.name == "files" else {
                    if let filename = field.filename {
                        throw APIError(.badRequest, "file part '\(field.name)' (\(filename)): files go in parts named 'files'")
                    }
                    continue
                }
                let name = field.filename.flatMap { $0.isEmpty ? nil : $0 } ?? "file"
                let type = field.contentType.flatMap { $0.isEmpty ? nil : $0 } ?? guessedType(name)
                found.append(Incoming(name: name, mimeType: type, bytes: field.value))
            }
            return found
        }
        guard let items = try body.list("files") else { return [] }
        return try items.enumerated().map { index, item in try jsonFile(item, index: index) }
    }

    /// One item of the JSON `files` list: `{"type":"file","raw_bytes":BASE64,"name"?,"mime_type"?,"metadata"?}`.
    static func jsonFile(_ item: JSON, index: Int) throws -> Incoming {
        guard let object = item.objectValue else {
            throw APIError(.badRequest, "files[\(index)] must be an object {\"type\":\"file\",\"raw_bytes\":BASE64}")
        }
        if let type = object["type"], type != .null, type.stringValue != "file" {
            throw APIError(.badRequest, "files[\(index)].type must be \"file\"")
        }
        guard case let .string(raw)? = object["raw_bytes"] else {
            throw APIError(.badRequest, "files[\(index)].raw_bytes is required: the file's bytes in base64")
        }
        guard let bytes = ChatbotHandlers.base64(raw) else {
            throw APIError(.badRequest, "files[\(index)].raw_bytes must be base64 (invalid base64)")
        }
        let metadata = object["metadata"]?.objectValue ?? [:]
        func text(_ key: String) throws -> String? {
            for source in [object, metadata] {
                switch source[key] {
                case nil, .null?: continue
                case let .string(s)?: if !s.isEmpty { return s }
                default: throw APIError(.badRequest, "files[\(index)].\(key) must be a string")
                }
            }
            return nil
        }
        let name = try text("name") ?? "file"
        return Incoming(name: name, mimeType: try text("mime_type") ?? guessedType(name), bytes: bytes)
    }

    /// `message_index`: absent or null is 0 (the SDK sends `message_index or 0`); a whole number >= 0, as a
    /// number or (in a form) as text.
    static func messageIndex(_ body: JSONObject) throws -> Int64 {
        guard let value = body["message_index"], value != .null else { return 0 }
        guard let n = value.intValue, n >= 0 else { throw APIError(.badRequest, "message_index must be a whole number >= 0") }
        return n
    }

    /// The type a file name suggests (a few common extensions, as Python's `mimetypes` gives them), else
    /// `application/octet-stream` (what the SDK sends when it cannot guess).
    static func guessedType(_ name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "application/octet-stream" }
        let types = [
            "txt": "text/plain", "md": "text/markdown", "csv": "text/csv", "tsv": "text/tab-separated-values",
            "html": "text/html", "htm": "text/html", "json": "application/json", "xml": "application/xml",
            "pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
            "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ]
        return types[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }

    /// What a turn's `chat_file_reader` nodes read (``RunOptions/chatFiles``): every file of the conversation, in
    /// upload order, as stored before the turn starts. Read only when `nodes` has such a node (the bytes can be
    /// large and nothing else needs them).
    static func readerFiles(_ app: MockShiftApp, namespace: String, conversationID: String, nodes: JSONObject) throws -> [ChatFile] {
        guard nodes.entries.contains(where: { $0.value.objectValue?["type"]?.stringValue == "chat_file_reader" }) else { return [] }
        return try app.store.conversationFiles(namespace: namespace, conversationID: conversationID).map {
            ChatFile(name: $0.name, mimeType: $0.mimeType, bytes: $0.bytes ?? [])
        }
    }

    /// A stored file as `GET /_mock/conversations/{id}` shows it: no bytes.
    static func render(_ file: ConversationFile) -> JSON {
        ["document_id": .string(file.documentID), "name": .string(file.name), "mime_type": .string(file.mimeType),
         "size": .int(Int64(file.size)), "sha256": .string(file.sha256), "message_index": .int(file.messageIndex),
         "created_at": .string(iso8601(micros: file.createdAt))]
    }
}
