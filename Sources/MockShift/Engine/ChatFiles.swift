/// A file of a chatbot conversation, as the run's `chat_file_reader` nodes read it (SPEC §9 "Files", issue 12
/// item 5). The engine knows no chatbots or uploads: whoever starts the run (the chatbot handlers) hands the
/// conversation's files over in ``RunOptions/chatFiles``, as it hands the history over in ``RunOptions/chatHistory``.
public struct ChatFile: Sendable, Equatable {
    public var name: String
    public var mimeType: String
    /// What the node outputs for the file: its content when it is text (valid UTF-8 without a NUL byte: a NUL
    /// marks binary data, as git and grep take it), else the deterministic placeholder `[file NAME: N bytes, MIME]`.
    public var text: String

    /// Reads `bytes` as the node will show them (see ``text``). The bytes themselves are not kept.
    public init(name: String, mimeType: String, bytes: [UInt8]) {
        self.name = name
        self.mimeType = mimeType
        let content = bytes.contains(0) ? nil : String(validating: bytes, as: UTF8.self)
        text = content ?? "[file \(name): \(bytes.count) bytes, \(mimeType)]"
    }
}

/// The `chat_file_reader` node (SDK `ChatFileReaderNode`, "Allows for document upload within chatbots"): its one
/// declared output, `documents` (`vec<string>`, "The uploaded file … is processed into text"), is a list with one
/// text per file of the conversation, in upload order, every file uploaded before the run started (not bound by
/// any memory window). Its inputs (`chunk_size`, `chunk_overlap`, `file_parser`, `max_docs_per_query`,
/// `retrieval_unit`) change nothing: MockShift does no retrieval, each file is one document.
enum ChatFileReader {
    /// The node's outputs for `files`; nil (a run that is no chatbot turn) gives an empty list.
    static func outputs(_ files: [ChatFile]?) -> JSONObject {
        ["documents": .array((files ?? []).map { .string($0.text) }), "complete": .bool(true)]
    }
}
