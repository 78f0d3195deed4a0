import Foundation
import Testing
@testable import MockShift

/// Conversational agent turns (SPEC §11): approval replies as the SDK sends them, the agent's tools, scripted answers
/// for agents and chatbots, and a restart during an approval wait.
@Suite struct AgentSessionTurnTests {
    static func agent(name: String = "helper", tools: JSON = .null) -> AgentRecord {
        AgentRecord(id: IDs.make(), namespace: "k1", name: name,
                    document: ["agent_type": "conversational", "tools": tools], currentVersion: nil, createdAt: 1, modifiedAt: 1)
    }

    static func reply(_ approval: JSON, parent: JSON = "m1") -> JSONObject {
        ["type": "post_message", "session_id": "s", "parent_message_id": parent,
         "content": ["type_string": "response_message", "value": ["tool_call_approval": approval]]]
    }

    @Test func approvalRepliesAreReadAsTheSDKSendsThemAndOtherMessagesAreNotReplies() throws {
        #expect(try AgentSessionTurn.approvalReply(in: ["type": "post_message", "content": "hello"]) == nil)
        #expect(try AgentSessionTurn.approvalReply(in: ["content": ["type_string": "text/plain", "value": "x"]]) == nil)
        let approve = try #require(try AgentSessionTurn.approvalReply(in: Self.reply(["confirm": [:]])))
        #expect(approve.parent == "m1" && approve.decision == .approve)
        let deny = try #require(try AgentSessionTurn.approvalReply(in: Self.reply(["deny": "not now"])))
        #expect(deny.decision == .deny(reason: "not now"))
        #expect(try AgentSessionTurn.approvalReply(in: Self.reply(["deny": ""]))?.decision == .deny(reason: "User denied tool call."))
    }

    @Test func aMalformedApprovalReplyThrowsAFrameErrorNamingWhatIsWrong() {
        func message(_ frame: JSONObject) -> String? {
            do { _ = try AgentSessionTurn.approvalReply(in: frame) } catch let error as SessionSocket.FrameError {
                return error.message
            } catch { return "\(error)" }
            return nil
        }
        #expect(message(Self.reply(["confirm": [:]], parent: .null)) == "an approval reply needs parent_message_id (the approval request's message id)")
        #expect(message(Self.reply(["maybe": true])) == "tool_call_approval needs confirm (an object) or deny (a reason)")
        #expect(message(Self.reply(["confirm": "yes"])) == "tool_call_approval.confirm must be an object")
        #expect(message(Self.reply(["deny": 3])) == "tool_call_approval.deny must be a reason (a string)")
        #expect(message(["content": ["type_string": "response_message", "value": "x"]])
                == "a response_message needs value.tool_call_approval with confirm (an object) or deny (a reason)")
    }

    @Test func toolsComeInSavedOrderFromAnObjectOrAListAndAutoRunByDefault() {
        let saved = Self.agent(tools: ["api_1": ["id": "api_1", "name": "weather_api", "approval_config": "requires_approval"],
                                       "arxiv_2": ["name": "arxiv_search"]])
        #expect(AgentSessionTurn.tools(of: saved) == [
            .init(id: "api_1", name: "weather_api", approval: "requires_approval"),
            .init(id: "arxiv_2", name: "arxiv_search", approval: "auto_run"),
        ])
        let listed = Self.agent(tools: [["id": "t", "name": "calc", "approval_config": "let_agent_decide"], "junk"])
        #expect(AgentSessionTurn.tools(of: listed) == [.init(id: "t", name: "calc", approval: "let_agent_decide")])
        #expect(AgentSessionTurn.tools(of: Self.agent()).isEmpty)
    }

    @Test func scriptedAnswersForAgentsAndChatbotsApplyOnlyToThem() throws {
        let scripts = LLMScripts()
        let pipeline = samplePipeline(namespace: "k1", name: "flow")
        let helper = Self.agent(name: "helper"), other = Self.agent(name: "other")
        try scripts.add(namespace: "k1", ["agent_id": .string(helper.id), "tool": "weather_api", "response": "by id"])
        try scripts.add(namespace: "k1", ["agent_name": "other", "response": "by name"])
        try scripts.add(namespace: "k1", ["chatbot_id": "bot1", "response": "for bot1"])
        try scripts.add(namespace: "k1", ["response": "anyone"])
        #expect(scripts.rules(namespace: "k1", agent: helper).map(\.script.response) == ["anyone", "by id"])
        #expect(scripts.rules(namespace: "k1", agent: helper).last?.tool == "weather_api")
        #expect(scripts.rules(namespace: "k1", agent: other).map(\.script.response) == ["anyone", "by name"])
        #expect(scripts.scripts(namespace: "k1", pipeline: pipeline).map(\.response) == ["anyone"])
        #expect(scripts.scripts(namespace: "k1", pipeline: pipeline, chatbotID: "bot1").map(\.response) == ["anyone", "for bot1"])
        #expect(scripts.scripts(namespace: "k1", pipeline: pipeline, chatbotID: "bot2").map(\.response) == ["anyone"])
        #expect(throws: APIError.self) { try scripts.add(namespace: "k1", ["tool": "x"]) }
        #expect(throws: APIError.self) { try scripts.add(namespace: "k1", ["agent_id": "a", "chatbot_id": "b", "response": "r"]) }
    }

    @Test func aRestartDuringAnApprovalWaitStoresTheTurnInterruptedButNotAFinishedOne() throws {
        let store = try Store(path: ":memory:")
        let agentSender: JSONObject = ["object_id": "a1", "object_type": "agent"]
        func session(_ last: [(JSONObject, JSONObject)]) throws -> String {
            let s = SessionRecord(id: IDs.make(), namespace: "k1", ownerType: .agent, ownerID: "a1", createdAt: 1)
            try store.createSession(s)
            let all = [(["user_id": "user"], ["type": "data_type_message", "value": "hi", "status": "Complete"])] + last
            for (sender, content) in all {
                try store.appendSessionMessage(SessionMessageRecord(id: IDs.make(), sessionID: s.id, sender: sender,
                                                                    content: content, createdAt: 2))
            }
            return s.id
        }
        let waiting = try session([(agentSender, ["type": "tool_call_approval", "tool_id": "t", "status": "Pending"])])
        let calling = try session([(agentSender, ["type": "tool_call", "tool_id": "t", "status": "Complete"])])
        let done = try session([(agentSender, ["type": "tool_call", "tool_id": "t", "status": "Complete"]),
                                (agentSender, ["type": "data_type_message", "value": "ok", "status": "Complete"])])
        #expect(try store.failInterruptedSessionTurns(at: 3, newID: IDs.make) == 2)
        for id in [waiting, calling] {
            let last = try #require(try store.sessionMessages(namespace: "k1", sessionID: id).last)
            #expect(last.content["error"] == "interrupted" && last.sender == agentSender)
        }
        #expect(try store.sessionMessages(namespace: "k1", sessionID: done).last?.content["value"] == "ok")
    }
}
