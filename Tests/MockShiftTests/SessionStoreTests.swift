import Foundation
import Testing
@testable import MockShift

/// Sessions in SQLite (SPEC §10, migration 10): per namespace, terminated for good, messages in order.
@Suite struct SessionStoreTests {
    static func session(_ namespace: String = "k1") -> SessionRecord {
        SessionRecord(id: IDs.make(), namespace: namespace, ownerType: .chatbot, ownerID: IDs.make(), createdAt: 5)
    }

    @Test func aSessionIsFoundByItsKeyOnlyAndSurvivesReopening() throws {
        let path = temporaryDatabasePath()
        let s = Self.session()
        do {
            let store = try Store(path: path)
            try store.createSession(s)
            #expect(try store.session(namespace: "k1", id: s.id) == s)
            #expect(try store.session(namespace: "k2", id: s.id) == nil)
        }
        let reopened = try Store(path: path)
        #expect(try reopened.session(namespace: "k1", id: s.id) == s)
    }

    @Test func terminatingTwiceKeepsTheFirstTimeAndAnotherKeyCannotTerminate() throws {
        let store = try Store(path: ":memory:")
        let s = Self.session()
        try store.createSession(s)
        #expect(try store.terminateSession(namespace: "k2", id: s.id, at: 10) == nil)
        #expect(try store.session(namespace: "k1", id: s.id)?.status == .open)
        let first = try #require(try store.terminateSession(namespace: "k1", id: s.id, at: 10))
        #expect(first.status == .terminated && first.terminatedAt == 10)
        #expect(try store.terminateSession(namespace: "k1", id: s.id, at: 20)?.terminatedAt == 10)
    }

    @Test func messagesComeBackInOrderForTheirKeyOnlyAndGoWithTheNamespace() throws {
        let store = try Store(path: ":memory:")
        let s = Self.session()
        try store.createSession(s)
        for text in ["one", "two", "three"] {
            #expect(try store.appendSessionMessage(SessionMessageRecord(
                id: IDs.make(), sessionID: s.id, sender: ["user_id": "u"],
                content: ["type": "data_type_message", "value": .string(text), "status": "Complete"], createdAt: 7)))
        }
        #expect(try store.sessionMessages(namespace: "k1", sessionID: s.id).map { $0.content["value"] } == ["one", "two", "three"])
        #expect(try store.sessionMessages(namespace: "k2", sessionID: s.id).isEmpty)
        #expect(try !store.appendSessionMessage(SessionMessageRecord(id: "x", sessionID: "gone", sender: [:], content: [:], createdAt: 1)))
        _ = try store.deleteNamespace("k1")
        #expect(try store.session(namespace: "k1", id: s.id) == nil)
        #expect(try store.sessionMessages(namespace: "k1", sessionID: s.id).isEmpty)
    }

    @Test func afterARestartOnlySessionsWhoseLastMessageIsTheUsersGetAnInterruptedAnswer() throws {
        let store = try Store(path: ":memory:")
        let cut = Self.session(), answered = Self.session(), empty = Self.session()
        for s in [cut, answered, empty] { try store.createSession(s) }
        func add(_ s: SessionRecord, _ sender: JSONObject, _ text: String) throws {
            try store.appendSessionMessage(SessionMessageRecord(id: IDs.make(), sessionID: s.id, sender: sender,
                content: ["type": "data_type_message", "value": .string(text), "status": "Complete"], createdAt: 1))
        }
        try add(cut, ["user_id": "user"], "hello")
        try add(answered, ["user_id": "user"], "hi")
        try add(answered, ["object_id": .string(answered.ownerID), "object_type": "chatbot"], "hello there")
        #expect(try store.failInterruptedSessionTurns(at: 9, newID: IDs.make) == 1)
        let messages = try store.sessionMessages(namespace: "k1", sessionID: cut.id)
        #expect(messages.count == 2)
        #expect(messages[1].sender == ["object_id": .string(cut.ownerID), "object_type": "chatbot"])
        #expect(messages[1].content["error"] == "interrupted" && messages[1].content["status"] == "Failed")
        #expect(try store.sessionMessages(namespace: "k1", sessionID: answered.id).count == 2)
        #expect(try store.sessionMessages(namespace: "k1", sessionID: empty.id).isEmpty)
        #expect(try store.failInterruptedSessionTurns(at: 10, newID: IDs.make) == 0, "twice changes nothing")
    }
}
