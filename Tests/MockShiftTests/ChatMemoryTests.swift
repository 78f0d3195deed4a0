import Testing
@testable import MockShift

/// `chat_memory`'s `memory` output for every memory type (SPEC §9).
@Suite struct ChatMemoryTests {
    /// Four messages: two turns, the second answer stopped by the user.
    let history = ChatHistory(messages: [
        .init(role: .human, text: "tell me about cats"),
        .init(role: .ai, text: "Cats purr and sleep"),
        .init(role: .human, text: "and dogs"),
        .init(role: .ai, text: "Dogs bark", stopped: true),
    ], currentText: "do cats sleep a lot")

    func memory(_ type: String?, _ window: Int? = nil) -> String { ChatMemory.memory(history, type: type, window: window) }

    @Test func fullFormattedGivesEveryMessageOneLineWithAStoppedAnswerMarked() {
        #expect(memory("Full - Formatted") == "User: tell me about cats\nAssistant: Cats purr and sleep\nUser: and dogs\nAssistant: Dogs bark [stopped]")
    }

    @Test func messageBufferGivesTheLastWindowMessages() {
        #expect(memory("Message Buffer", 2) == "User: and dogs\nAssistant: Dogs bark [stopped]")
        #expect(memory("Message Buffer", 0) == "")
        #expect(memory("Message Buffer", 10) == memory("Full - Formatted"))
    }

    @Test func tokenBufferIsTheDefaultAndKeepsTheNewestMessagesWhoseWordsFit() {
        // Newest first: "Dogs bark [stopped]" 3 words, "and dogs" 2, "Cats purr and sleep" 4: 3+2 = 5 fit in 6, +4 does not.
        #expect(memory("Token Buffer", 6) == "User: and dogs\nAssistant: Dogs bark [stopped]")
        #expect(memory("Token Buffer", 2) == "")
        #expect(memory(nil, nil) == memory("Full - Formatted"), "default: Token Buffer with a window of 2048")
    }

    @Test func vectorDatabaseGivesTheMessagesSharingMostWordsInConversationOrder() {
        // "do cats sleep a lot": "Cats purr and sleep" shares cats+sleep, "tell me about cats" shares cats.
        #expect(memory("Vector Database", 2) == "User: tell me about cats\nAssistant: Cats purr and sleep")
        #expect(memory("Vector Database", 1) == "Assistant: Cats purr and sleep")
    }

    @Test func fullRawIsTheJSONListOfTypedMessages() throws {
        let raw = try JSON.parse(memory("Full - Raw"))
        #expect(raw == [["type": "human", "message": "tell me about cats"], ["type": "ai", "message": "Cats purr and sleep"],
                        ["type": "human", "message": "and dogs"], ["type": "ai", "message": "Dogs bark [stopped]"]])
    }

    @Test func noHistoryIsAnEmptyMemory() {
        let empty = ChatHistory(messages: [], currentText: "hi")
        #expect(ChatMemory.memory(empty, type: "Full - Formatted", window: nil) == "")
        #expect(ChatMemory.memory(empty, type: "Full - Raw", window: nil) == "[]")
    }
}

/// Chatbots, conversations and turns in SQLite (migration 9).
@Suite struct ChatbotStoreTests {
    func chatbot(namespace: String = "default", name: String = "bot", createdAt: Int64 = 1) -> ChatbotRecord {
        ChatbotRecord(id: IDs.make(), namespace: namespace, name: name, description: "d", pipelineID: IDs.make(),
                      pipelineVersion: nil, input: "input_0", output: "output_0", deployed: false,
                      configs: ["access_config": ["public": true]], createdAt: createdAt, modifiedAt: createdAt)
    }

    func turn(_ text: String, _ outcome: TurnOutcome = .completed) -> ChatTurn {
        ChatTurn(userText: text, answer: "re: \(text)", runID: IDs.make(), outcome: outcome, createdAt: 5, endedAt: 6)
    }

    @Test func chatbotsAreStoredPerNamespaceAndListedNewestFirst() throws {
        let store = try Store(path: ":memory:")
        let a = chatbot(createdAt: 1), b = chatbot(name: "b", createdAt: 2), other = chatbot(namespace: "key-b")
        for bot in [a, b, other] { try store.saveChatbot(bot) }
        #expect(try store.chatbot(namespace: "default", id: a.id) == a)
        #expect(try store.chatbot(namespace: "key-b", id: a.id) == nil)
        #expect(try store.chatbot(namespace: "default", name: "b") == b)
        #expect(try store.chatbots(namespace: "default", offset: 0, limit: 10).map(\.id) == [b.id, a.id])
        #expect(try store.chatbots(namespace: "default", offset: 1, limit: 10).map(\.id) == [a.id])
    }

    @Test func turnsAppendInOrderSurviveReopeningAndGoWithTheirChatbot() throws {
        let path = temporaryDatabasePath()
        let bot = chatbot()
        let first = turn("one"), second = turn("two", .stopped)
        do {
            let store = try Store(path: path)
            try store.saveChatbot(bot)
            try store.createConversation(namespace: "default", id: "c1", chatbotID: bot.id, at: 3)
            #expect(try store.appendTurn(conversationID: "c1", first))
            #expect(try store.appendTurn(conversationID: "c1", second))
            #expect(try store.appendTurn(conversationID: "missing", turn("lost")) == false, "no conversation, nothing stored")
        }
        let store = try Store(path: path)
        #expect(try store.conversation(namespace: "default", id: "c1")?.turns == [first, second])
        #expect(try store.conversation(namespace: "key-b", id: "c1") == nil)
        #expect(try store.conversations(namespace: "default", chatbotID: bot.id).map(\.id) == ["c1"])
        #expect(try store.turnOwner(namespace: "default", runID: second.runID)?.chatbotID == bot.id)
        #expect(try store.turnOwner(namespace: "key-b", runID: second.runID) == nil)
        #expect(try store.deleteChatbot(namespace: "default", id: bot.id))
        #expect(try store.conversation(namespace: "default", id: "c1") == nil)
        #expect(try store.turnOwner(namespace: "default", runID: second.runID) == nil)
    }

    @Test func resettingANamespaceDeletesItsChatbotsAndConversations() throws {
        let store = try Store(path: ":memory:")
        let mine = chatbot(), theirs = chatbot(namespace: "key-b")
        try store.saveChatbot(mine)
        try store.saveChatbot(theirs)
        try store.createConversation(namespace: "default", id: "c1", chatbotID: mine.id, at: 1)
        try store.createConversation(namespace: "key-b", id: "c2", chatbotID: theirs.id, at: 1)
        _ = try store.deleteNamespace("default")
        #expect(try store.chatbots(namespace: "default", offset: 0, limit: 10).isEmpty)
        #expect(try store.conversations(namespace: "default", chatbotID: nil).isEmpty)
        #expect(try store.conversations(namespace: "key-b", chatbotID: nil).map(\.id) == ["c2"])
    }
}
