import Foundation
import Testing
@testable import MockShift

/// The session test controls (issue 13 item 5): the listing from the store, the turns read from stored messages,
/// and the journal's WebSocket frame entries.
@Suite struct SessionControlsTests {
    static func user(_ text: String, at time: Int64 = 1) -> SessionMessageRecord {
        SessionMessageRecord(id: IDs.make(), sessionID: "s", sender: ["user_id": "u"],
                             content: ["type": "data_type_message", "value": .string(text)], createdAt: time)
    }

    static func bot(_ content: JSONObject, at time: Int64 = 2) -> SessionMessageRecord {
        SessionMessageRecord(id: IDs.make(), sessionID: "s", sender: ["object_id": "a", "object_type": "agent"],
                             content: content, createdAt: time)
    }

    static func answer(_ text: String, _ status: String?, at time: Int64 = 2) -> SessionMessageRecord {
        var content: JSONObject = ["type": "data_type_message", "value": .string(text)]
        if let status { content["status"] = .string(status) }
        return bot(content, at: time)
    }

    @Test func listingIsOldestFirstWithMessageCountsAndFilters() throws {
        let store = try Store(path: ":memory:")
        let owner = IDs.make()
        let a = SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .chatbot, ownerID: owner, createdAt: 20)
        let b = SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .agent, ownerID: IDs.make(), createdAt: 10)
        let other = SessionRecord(id: IDs.make(), namespace: "k2", ownerType: .chatbot, ownerID: owner, createdAt: 5)
        for s in [a, b, other] { try store.createSession(s) }
        for text in ["hi", "there"] {
            var m = Self.user(text)
            m.sessionID = a.id
            try store.appendSessionMessage(m)
        }
        _ = try store.terminateSession(namespace: "k1", id: b.id, at: 30)
        let all = try store.sessions(namespace: "k1")
        #expect(all.map(\.session.id) == [b.id, a.id], "oldest first, another key's left out")
        #expect(all.map(\.messages) == [0, 2])
        #expect(try store.sessions(namespace: "k1", ownerID: owner).map(\.session.id) == [a.id])
        #expect(try store.sessions(namespace: "k1", status: .terminated).map(\.session.id) == [b.id])
        #expect(try store.sessions(namespace: "k1", status: .open).map(\.session.id) == [a.id])
    }

    @Test func eachUserMessageWithTheAnswerAfterItIsATurnWithItsOutcome() {
        let messages = [Self.user("one"), Self.answer("first answer", "Complete"),
                        Self.user("two"), Self.answer("cut", "Terminated"),
                        Self.user("three"), Self.answer("", "Failed"),
                        Self.user("four"), Self.bot(["type": "error_message", "error": "provider overloaded"]),
                        Self.user("five")]
        let turns = SessionControls.turns(of: messages, terminated: false)
        #expect(turns.map { $0["outcome"] } == ["completed", "terminated", "failed", "failed", "in_progress"])
        #expect(turns.map { $0["user_text"] } == ["one", "two", "three", "four", "five"])
        #expect(turns[0]["answer"] == "first answer" && turns[0]["answer_message_id"] == .string(messages[1].id))
        #expect(turns[3]["error"] == "provider overloaded" && turns[3]["answer"] == .null)
        #expect(turns[4]["answer"] == .null && turns[4]["ended_at"] == .null && turns[4]["answer_message_id"] == .null)
        #expect(turns[1]["message_ids"] == .array([.string(messages[2].id), .string(messages[3].id)]))
        #expect(turns.map { $0["index"] } == [0, 1, 2, 3, 4])
    }

    @Test func aStreamingAnswerIsInProgressAndAnUnansweredTurnOfATerminatedSessionIsTerminated() {
        #expect(SessionControls.turns(of: [Self.user("a"), Self.answer("so far", "Streaming")], terminated: false)
            .map { $0["outcome"] } == ["in_progress"])
        #expect(SessionControls.turns(of: [Self.user("a")], terminated: true).map { $0["outcome"] } == ["terminated"])
        #expect(SessionControls.turns(of: [Self.user("a"), Self.answer("so far", "Streaming")], terminated: true)
            .map { $0["outcome"] } == ["terminated"])
    }

    @Test func toolCallsAndApprovalRepliesStayInTheirTurnAndTheLastAnswerCounts() {
        let approval = Self.bot(["type": "tool_call_approval", "tool_name": "send_email", "tool_id": "t"])
        let reply = SessionMessageRecord(
            id: IDs.make(), sessionID: "s", sender: ["user_id": "u"],
            content: ["type_string": "response_message", "value": ["tool_call_approval": ["confirm": [:]]]], createdAt: 3)
        let pending = SessionControls.turns(of: [Self.user("mail them"), approval], terminated: false)
        #expect(pending.map { $0["outcome"] } == ["awaiting_approval"])
        let done = SessionControls.turns(of: [Self.user("mail them"), approval, reply,
                                              Self.bot(["type": "tool_call", "tool_name": "send_email", "status": "done"]),
                                              Self.answer("Sent.", "Complete", at: 9)], terminated: false)
        #expect(done.count == 1, "the approval reply is no turn of its own")
        #expect(done[0]["outcome"] == "completed" && done[0]["answer"] == "Sent." && done[0]["user_text"] == "mail them")
        #expect(done[0]["message_ids"]?.arrayValue?.count == 5)
        #expect(done[0]["ended_at"] == .string(iso8601(micros: 9)))
    }

    @Test func severalUserMessagesOfOnePostAreOneTurnAndGreetingsBeforeThemNone() {
        let file = SessionMessageRecord(id: IDs.make(), sessionID: "s", sender: ["user_id": "u"],
                                        content: ["type": "file", "value": ["name": "a.txt"]], createdAt: 1)
        let turns = SessionControls.turns(of: [Self.answer("Welcome!", "Complete", at: 0), Self.user("read this"), file,
                                               Self.answer("Done.", "Complete")], terminated: false)
        #expect(turns.count == 1 && turns[0]["user_text"] == "read this" && turns[0]["answer"] == "Done.")
        #expect(turns[0]["message_ids"]?.arrayValue?.count == 3)
    }

    @Test func journalKeepsFramesWithoutBodiesInTheSameRingAndFiltersThem() {
        let journal = Journal(capacity: 3)
        let tap = FrameTap(journal: journal, namespace: "k1", path: "/v1/ws/session", authorization: "Bearer sk-secret-key-1234")
        journal.record(Journal.Entry(namespace: "k1", atMicros: 1, method: "GET", path: "/v1/ws/session", query: [],
                                     body: [], form: nil, status: 101, durationNanoseconds: 5,
                                     authorization: Journal.mask("Bearer sk-secret-key-1234")))
        tap.received(["type": "post_message", "session_id": "S1", "content": "a secret question"], size: 70)
        tap.sent(["type": "message_delta", "session_id": "S1", "value": "x"], size: 60)
        tap.received(nil, size: 3)
        let all = journal.entries(namespace: "k1", limit: 10)
        #expect(all.map { $0["kind"] } == ["ws_frame", "ws_frame", "ws_frame"], "the ring of 3 dropped the oldest entry, the upgrade")
        #expect(all.map { $0["direction"] } == ["in", "out", "in"])
        #expect(all.map { $0["type"] } == ["post_message", "message_delta", .null])
        #expect(all.map { $0["size"] } == [70, 60, 3])
        #expect(all[0]["authorization"] == "Bearer …1234" && all[0]["path"] == "/v1/ws/session")
        #expect(!JSON.array(all.map(JSON.object)).encodedString().contains("secret question"), "no frame body is kept")
        #expect(journal.entries(namespace: "k1", limit: 10, sessionID: "S1").count == 2)
        #expect(journal.entries(namespace: "k1", limit: 10, kind: "request").isEmpty)
        #expect(journal.entries(namespace: "k2", limit: 10).isEmpty)
        let long = String(repeating: "t", count: 1000)
        tap.received(["type": .string(long)], size: 1010)
        #expect(journal.entries(namespace: "k1", limit: 1)[0]["type"]?.stringValue?.count == 65, "a long type is cut")
    }

    @Test func requestEntriesSayTheirKind() {
        let journal = Journal(capacity: 2)
        journal.record(Journal.Entry(namespace: "k1", atMicros: 1, method: "GET", path: "/v1/pipelines", query: [],
                                     body: [], form: nil, status: 200, durationNanoseconds: 5, authorization: .null))
        let entry = journal.entries(namespace: "k1", limit: 1, kind: "request")
        #expect(entry.count == 1 && entry[0]["kind"] == "request" && entry[0]["path"] == "/v1/pipelines")
    }
}

/// Fixture agents (issue 13 item 5): the short form expanded to the document `Agent.new` saves, with ids that do not
/// change between loads.
@Suite struct FixtureAgentTests {
    static func parse(_ text: String) throws -> Fixtures.Agent {
        try Fixtures.agent(try #require(try JSON.parse(text).objectValue))
    }

    @Test func aFunctionalAgentExpandsToTheSDKsDocumentWithStableIDsAndResolvedPlaceholders() throws {
        let text = """
            {"name": "summarizer", "instructions": "Summarise [[inputs.ticket]] into [[outputs.summary]]; use [[ tools.notify ]].",
             "inputs": {"ticket": "string"}, "outputs": {"summary": {"io_type": "string", "description": "one line"}},
             "llm": {"provider": "anthropic", "model_id": "claude-3"},
             "tools": [{"name": "notify", "type": "email_notification", "approval_config": "requires_approval",
                        "inputs": {"recipient_email": "ops@example.com"}}]}
            """
        let agent = try Self.parse(text)
        let again = try Self.parse(text)
        #expect(agent.document == again.document, "the same fixture gives the same document, ids included")
        let d = agent.document
        #expect(d["agent_type"] == "functional" && d["llm_client_key"]?["provider"] == "anthropic")
        #expect(d["llm_client_key"]?["json_output"] == true, "LlmInfo's defaults filled in")
        let inputID = try #require(d["inputs"]?.objectValue?.keys.first)
        let outputID = try #require(d["outputs"]?.objectValue?.keys.first)
        let toolID = try #require(d["tools"]?.objectValue?.keys.first)
        #expect(inputID.hasPrefix("input_") && inputID.count == 30 && outputID.hasPrefix("output_"))
        #expect(toolID.hasPrefix("email_notification_") && toolID.count == "email_notification_".count + 24)
        #expect(d["inputs"]?[inputID] == ["name": "ticket", "io_type": "string", "description": ""])
        #expect(d["instructions"] == .string("Summarise {{inputs.\(inputID)}} into {{outputs.\(outputID)}}; use {{tools.\(toolID)}}."))
        let tool = try #require(d["tools"]?[toolID])
        #expect(tool["approval_config"] == "requires_approval" && tool["value"]?["node_type"] == "email_notification")
        #expect(tool["value"]?["inputs"]?["recipient_email"] == ["type": "static", "value": "ops@example.com"])
        #expect(d["memory_config"] == nil, "a functional agent gets no memory_config unless given")
        #expect(Fixtures.stableID(["a", "input", "x"]) != Fixtures.stableID(["b", "input", "x"]))
    }

    @Test func aConversationalAgentKeepsItsInstructionsAndGetsSessionMemory() throws {
        let agent = try Self.parse(#"{"name": "support", "agent_type": "conversational", "instructions": "Keep [[this]]."}"#)
        #expect(agent.document["instructions"] == "Keep [[this]].", "only functional agents' placeholders are rewritten")
        #expect(agent.document["memory_config"] == ["enable_session_memory": true, "enable_global_memory": false])
        #expect(agent.document["llm_client_key"]?["model_id"] == "gpt-4o")
    }

    @Test(arguments: [
        (#"{"agent_type": "functional"}"#, "name is required"),
        (#"{"name": "a", "agent_type": "chatty"}"#, "agent_type must be functional or conversational"),
        (#"{"name": "a", "colour": 1}"#, "unknown key 'colour'"),
        (#"{"name": "a", "llm": {"model": "x"}}"#, "llm: unknown key 'model'"),
        (#"{"name": "a", "inputs": {"x": 3}}"#, "inputs.x must be an io type"),
        (#"{"name": "a", "tools": [{"name": "t"}]}"#, "tools[0].type must be a tool type"),
        (#"{"name": "a", "tools": [{"type": "web", "approval_config": "maybe"}]}"#, "tools[0].approval_config must be"),
        (#"{"name": "a", "tools": [{"type": "web"}, {"type": "web"}]}"#, "tools[1]: a tool named 'web' is defined twice"),
        (#"{"name": "a", "instructions": "Use [[inputs.nope]]", "inputs": {"x": "string"}}"#, "instructions: [[inputs.nope]] names no input of the agent (x)"),
        (#"{"name": "a", "instructions": "Use [[x]]"}"#, "instructions: placeholder [[x]] needs inputs."),
    ])
    func aBadFixtureAgentIsRefusedNamingTheField(text: String, message: String) throws {
        do {
            _ = try Self.parse(text)
            Issue.record("\(text) was accepted")
        } catch let error as APIError {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }
}
