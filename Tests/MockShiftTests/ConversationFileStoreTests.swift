import Testing
@testable import MockShift

/// Files of chatbot conversations in SQLite (migration 10; SPEC §9 "Files", issue 12 item 5).
@Suite struct ConversationFileStoreTests {
    func chatbot(namespace: String = "default") -> ChatbotRecord {
        ChatbotRecord(id: IDs.make(), namespace: namespace, name: "bot", description: "", pipelineID: IDs.make(),
                      pipelineVersion: nil, input: "input_0", output: "output_0", deployed: false, configs: [:],
                      createdAt: 1, modifiedAt: 1)
    }

    func file(_ name: String, _ bytes: [UInt8], index: Int64 = 0) -> ConversationFile {
        ConversationFile(name: name, mimeType: "application/octet-stream", bytes: bytes, messageIndex: index, createdAt: 7)
    }

    /// Every byte value, a NUL first: nothing may be cut or re-encoded on the way in or out.
    let binary: [UInt8] = Array(0...255) + [0xff, 0xfe, 0x00, 0x0d, 0x0a]

    @Test func filesAreStoredInUploadOrderWithTheirBytesAndSurviveReopening() throws {
        let path = temporaryDatabasePath()
        let bot = chatbot()
        let first = file("a.bin", binary), empty = file("empty.txt", []), third = file("c.txt", Array("third".utf8), index: 4)
        do {
            let store = try Store(path: path)
            try store.saveChatbot(bot)
            #expect(try store.addConversationFiles(namespace: "default", chatbotID: bot.id, conversationID: "c1", create: true,
                                                   knowledgeBaseID: "kb1", files: [first, empty], at: 3) == .stored(knowledgeBaseID: "kb1"))
            // A later upload keeps the conversation's knowledge base, whatever id it offers.
            #expect(try store.addConversationFiles(namespace: "default", chatbotID: bot.id, conversationID: "c1", create: false,
                                                   knowledgeBaseID: "kb2", files: [third], at: 9) == .stored(knowledgeBaseID: "kb1"))
        }
        let store = try Store(path: path)
        let read = try store.conversationFiles(namespace: "default", conversationID: "c1")
        #expect(read == [first, empty, third])
        #expect(read.map(\.bytes) == [binary, [], Array("third".utf8)])
        let conversation = try #require(try store.conversation(namespace: "default", id: "c1"))
        #expect(conversation.knowledgeBaseID == "kb1" && conversation.createdAt == 3 && conversation.chatbotID == bot.id)
        #expect(conversation.files.map(\.documentID) == [first.documentID, empty.documentID, third.documentID])
        #expect(conversation.files.allSatisfy { $0.bytes == nil }, "a listing carries no bytes")
        #expect(conversation.files.map(\.size) == [binary.count, 0, 5])
        #expect(conversation.files.map(\.messageIndex) == [0, 0, 4])
        #expect(try store.conversationFiles(namespace: "key-b", conversationID: "c1").isEmpty, "another key's")
    }

    @Test func anUploadToAMissingOrForeignConversationOrChatbotStoresNothing() throws {
        let store = try Store(path: ":memory:")
        let mine = chatbot(), other = chatbot(), theirs = chatbot(namespace: "key-b")
        for bot in [mine, other, theirs] { try store.saveChatbot(bot) }
        try store.createConversation(namespace: "default", id: "c1", chatbotID: mine.id, at: 1)
        let upload = [file("a.txt", Array("a".utf8))]
        func add(_ namespace: String, _ chatbotID: String, _ conversationID: String, create: Bool = false) throws -> Store.FileUpload {
            try store.addConversationFiles(namespace: namespace, chatbotID: chatbotID, conversationID: conversationID,
                                           create: create, knowledgeBaseID: "kb", files: upload, at: 2)
        }
        #expect(try add("default", other.id, "c1") == .conversationNotFound, "another chatbot's conversation")
        #expect(try add("key-b", theirs.id, "c1") == .conversationNotFound, "another key's conversation")
        #expect(try add("default", mine.id, "missing") == .conversationNotFound)
        #expect(try add("default", IDs.make(), "c1") == .chatbotNotFound)
        #expect(try add("default", theirs.id, "new", create: true) == .chatbotNotFound, "another key's chatbot")
        #expect(try store.conversationFiles(namespace: "default", conversationID: "c1").isEmpty)
        #expect(try store.conversation(namespace: "default", id: "c1")?.knowledgeBaseID == nil)
        #expect(try store.conversations(namespace: "default", chatbotID: nil).map(\.id) == ["c1"], "no conversation created")
    }

    @Test func filesGoWithTheirChatbotAndWithAResetOfTheNamespace() throws {
        let store = try Store(path: ":memory:")
        let bot = chatbot(), kept = chatbot(namespace: "key-b")
        try store.saveChatbot(bot)
        try store.saveChatbot(kept)
        for (namespace, chatbotID, conversationID) in [("default", bot.id, "c1"), ("key-b", kept.id, "c2")] {
            _ = try store.addConversationFiles(namespace: namespace, chatbotID: chatbotID, conversationID: conversationID,
                                               create: true, knowledgeBaseID: "kb", files: [file("f", binary)], at: 1)
        }
        #expect(try store.deleteChatbot(namespace: "default", id: bot.id))
        // The same conversation id again, under a new chatbot: none of the deleted one's files come back.
        let again = chatbot()
        try store.saveChatbot(again)
        try store.createConversation(namespace: "default", id: "c1", chatbotID: again.id, at: 2)
        #expect(try store.conversationFiles(namespace: "default", conversationID: "c1").isEmpty)
        #expect(try store.conversationFiles(namespace: "key-b", conversationID: "c2").count == 1)
        _ = try store.deleteNamespace("key-b")
        try store.saveChatbot(kept)
        try store.createConversation(namespace: "key-b", id: "c2", chatbotID: kept.id, at: 2)
        #expect(try store.conversationFiles(namespace: "key-b", conversationID: "c2").isEmpty)
    }
}
