import Testing
@testable import MockShift

/// `Store.chatbotActivity` (the dashboard's chatbot list, `GET /_mock/chatbots`): counts and last activity per
/// chatbot, computed by SQLite, within the caller's namespace.
@Suite struct ChatbotActivityTests {
    func chatbot(namespace: String = "default", name: String, createdAt: Int64) -> ChatbotRecord {
        ChatbotRecord(id: IDs.make(), namespace: namespace, name: name, description: "", pipelineID: IDs.make(),
                      pipelineVersion: nil, input: "input_0", output: "output_0", deployed: false, configs: [:],
                      createdAt: createdAt, modifiedAt: createdAt)
    }

    func turn(endedAt: Int64, _ outcome: TurnOutcome = .completed) -> ChatTurn {
        ChatTurn(userText: "q", answer: "a", runID: IDs.make(), outcome: outcome, createdAt: endedAt - 1, endedAt: endedAt)
    }

    @Test func countsConversationsAndTurnsPerChatbotNewestFirstWithTheLatestActivity() throws {
        let store = try Store(path: ":memory:")
        let quiet = chatbot(name: "quiet", createdAt: 1), busy = chatbot(name: "busy", createdAt: 2)
        let theirs = chatbot(namespace: "key-b", name: "theirs", createdAt: 3)
        for bot in [quiet, busy, theirs] { try store.saveChatbot(bot) }
        try store.createConversation(namespace: "default", id: "c1", chatbotID: busy.id, at: 10)
        try store.createConversation(namespace: "default", id: "c2", chatbotID: busy.id, at: 20)
        try store.appendTurn(conversationID: "c1", turn(endedAt: 15))
        try store.appendTurn(conversationID: "c1", turn(endedAt: 40, .stopped))
        try store.appendTurn(conversationID: "c2", turn(endedAt: 30, .failed))
        try store.createConversation(namespace: "key-b", id: "c3", chatbotID: theirs.id, at: 99)
        try store.appendTurn(conversationID: "c3", turn(endedAt: 100))

        let all = try store.chatbotActivity(namespace: "default", offset: 0, limit: 10)
        #expect(all.map(\.chatbot) == [busy, quiet], "newest first, this namespace only")
        #expect(all.map(\.conversations) == [2, 0])
        #expect(all.map(\.turns) == [3, 0])
        #expect(all.map(\.lastActivity) == [40, nil], "the newest turn end; nil without conversations")
        #expect(try store.chatbotActivity(namespace: "default", offset: 1, limit: 1).map(\.chatbot.id) == [quiet.id])
        #expect(try store.chatbotActivity(namespace: "key-b", offset: 0, limit: 10).map(\.turns) == [1])
    }

    @Test func aNewConversationWithoutTurnsIsItsChatbotsLatestActivity() throws {
        let store = try Store(path: ":memory:")
        let bot = chatbot(name: "bot", createdAt: 1)
        try store.saveChatbot(bot)
        try store.createConversation(namespace: "default", id: "old", chatbotID: bot.id, at: 10)
        try store.appendTurn(conversationID: "old", turn(endedAt: 12))
        try store.createConversation(namespace: "default", id: "new", chatbotID: bot.id, at: 50)
        let activity = try #require(try store.chatbotActivity(namespace: "default", offset: 0, limit: 10).first)
        #expect(activity.conversations == 2 && activity.turns == 1 && activity.lastActivity == 50)
    }
}
