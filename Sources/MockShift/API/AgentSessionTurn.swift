import Foundation
import MockShiftHTTP

/// The answer to an agent's approval request (API-CHAT §2.9): `{"confirm": {…}}` or `{"deny": "reason"}` under
/// `content.value.tool_call_approval` of a `post_message` naming the request in `parent_message_id`.
enum ApprovalDecision: Sendable, Equatable {
    case approve
    case deny(reason: String)

    /// `approved` or `denied`, as stored and as error messages say it.
    var word: String {
        if case .approve = self { return "approved" }
        return "denied"
    }
}

/// Conversational agent turns over sessions (SPEC §11, API-CHAT §2.4, §2.9, §3.4, issue 13 item 3). A turn is a run
/// (STYLE "a chatbot turn is a run"): one simulated LLM node (id `llm`; the agent's provider and model, system =
/// its instructions, prompt = the session's earlier messages and the user's text) started through
/// ``RunEngine/start`` under the agent's id with `agent_id` and `session_id` recorded, so the clock, `--time-scale`,
/// LLM faults on `POST /v1/ws/session/turn` and scripted answers apply, and `/_mock/runs` lists it. The answer
/// streams exactly as a chatbot session's (``ChatbotSessionTurn``): `Processing`, `message_delta`s, one
/// `message_notification` `Complete`, `Idle`. With `serve --replay-strict` (issue 15 item 3), a turn that no scripted
/// answer matches fails at once with an `error_message` naming the agent, the node `llm` and the prompt.
///
/// Tools (SPEC §11): the simulated agent calls at most one tool per turn, chosen deterministically: the tool a
/// matching scripted answer names (`tool`: a tool's name or id), else the first of the agent's tools (in saved
/// order) whose name the user's text mentions (case-insensitive). An `auto_run` or `let_agent_decide` tool gives a
/// `tool_call` notification, then the answer (whose prompt says the tool was called). A `requires_approval` tool
/// gives a `tool_call_approval` notification and `participant_status` `AwaitingApproval`; the turn then waits with
/// no timer running until the approval reply (``answer(_:session:parent:decision:socket:)``): approve → `Processing`,
/// the `tool_call` notification and the streamed answer; deny → `Processing`, a short answer saying the tool was not
/// used and why, `Complete`, `Idle`. `terminate_session` while waiting stores the answer as `Terminated` (empty).
/// Every notification is also stored as a session message, so `get_messages` shows the tool call and the approval.
enum AgentSessionTurn {
    /// A tool of the agent, as the simulated agent sees it.
    struct Tool: Sendable, Equatable {
        let id: String
        let name: String
        /// `auto_run`, `let_agent_decide` or `requires_approval` (the SDK's `ToolApprovalConfig`).
        let approval: String
    }

    /// The LLM node of a turn's simulated pipeline (a scripted answer's `node_id` names it), and its output node.
    static let llmNode = "llm", answerOutput = "answer", inputNode = "message"

    /// What a turn needs after its approval: everything the answer's run is made of.
    struct Plan: Sendable {
        let agent: AgentRecord
        let sessionID: String
        let userText: String
        /// The earlier messages and file notes, one per line, `{{` broken up (``AgentHandlers/literal(_:)``).
        let context: String
        let script: LLMScript?
        let tool: Tool?
        let llmFailures: [RunOptions.LLMFailure]

        /// The prompt as the LLM node resolves it (what `prompt_pattern` is searched in), without the tool line.
        var prompt: String { context + "User: " + userText }
    }

    // MARK: Turns

    /// Starts the turn of `items` in agent session `session`: the ack (with the user's message id), `Processing`,
    /// then the tool call or approval request and the answer as they come. Throws ``ChatbotSessionTurn/Refused``
    /// (nothing stored, nothing sent) when the agent is gone or not conversational, or a turn is in progress.
    static func start(_ app: MockShiftApp, session: SessionRecord, type: String, items: [SessionContent],
                      socket: SessionSocket, effect: Faults.Effect?) throws {
        let namespace = session.namespace
        guard let agent = try app.store.agent(namespace: namespace, id: session.ownerID) else {
            throw ChatbotSessionTurn.Refused(message: "agent \(session.ownerID) of this session was deleted")
        }
        guard agent.isConversational else {
            throw ChatbotSessionTurn.Refused(message: "agent \(agent.id) is functional: it runs over HTTP, not in a session")
        }
        let text = SessionContent.userText(items)
        let turn = SessionTurn(hub: app.sessionHub, sessionID: session.id, namespace: namespace,
                               sender: ["object_id": .string(agent.id), "object_type": "agent"], userText: text)
        guard app.sessionHub.begin(turn) else { throw ChatbotSessionTurn.Refused(message: "a turn is in progress") }
        let earlier: [SessionMessageRecord], userMessageID: String
        do {
            earlier = try app.store.sessionMessages(namespace: namespace, sessionID: session.id)
            userMessageID = try SessionSocket.storeUserMessages(app, session: session.id, items)
        } catch {
            app.sessionHub.end(turn)
            throw error
        }
        socket.send(SessionSocket.frame(type, session.id, [("success", true), ("message_id", .string(userMessageID))]))
        turn.status("Processing")

        let context = self.context(agent, earlier: earlier, items: items)
        let prompt = context + "User: " + text
        let rule = app.llmScripts.rules(namespace: namespace, agent: agent).first {
            $0.script.matches(nodeID: llmNode, nodeName: llmNode, prompt: prompt)
        }
        if rule == nil, app.engine.settings.replayStrict {  // `--replay-strict`: nothing recorded, nothing made up
            return fail(app, turn, LLMScript.unrecorded("agent", agent.name, node: llmNode, prompt: prompt))
        }
        let tools = self.tools(of: agent)
        var tool: Tool?
        if let named = rule?.tool {
            guard let found = tools.first(where: { $0.name.caseInsensitiveCompare(named) == .orderedSame || $0.id == named }) else {
                return fail(app, turn, "scripted answer \(rule!.id) names the tool '\(SessionSocket.short(named))', which agent \(agent.name) does not have")
            }
            tool = found
        } else {
            tool = tools.first { !$0.name.isEmpty && text.range(of: $0.name, options: .caseInsensitive) != nil }
        }
        // The rule is applied as matched here: the engine must not search its pattern again in a prompt that
        // also says which tool was called.
        var script = rule?.script
        script?.nodeID = nil
        script?.node = nil
        script?.promptPattern = nil
        script?.prompt = nil
        let plan = Plan(agent: agent, sessionID: session.id, userText: text, context: context, script: script, tool: tool,
                        llmFailures: effect?.llmFailures ?? [])
        guard let tool else { return runAnswer(app, turn, plan) }
        if tool.approval == "requires_approval" {
            askApproval(app, turn, plan, tool)
        } else {
            notifyToolCall(app, turn, tool)
            runAnswer(app, turn, plan)
        }
    }

    /// The agent's tools, in saved order (`tools` is `{tool_id: {id, name, approval_config, …}}` as the SDK saves
    /// it, or a list); a tool without `approval_config` auto-runs, as the SDK's default.
    static func tools(of agent: AgentRecord) -> [Tool] {
        let raw: [(String, JSON)]
        switch agent.document["tools"] {
        case let .object(tools)?: raw = tools.entries
        case let .array(list)?: raw = list.enumerated().map { (String($0.offset), $0.element) }
        default: raw = []
        }
        return raw.compactMap { key, value in
            guard let tool = value.objectValue else { return nil }
            let id = tool["id"]?.stringValue ?? key
            return Tool(id: id, name: tool["name"]?.stringValue ?? id, approval: tool["approval_config"]?.stringValue ?? "auto_run")
        }
    }

    /// The lines before the user's text in the prompt: the session's earlier text messages (`User: …` /
    /// `Assistant: …`, oldest first) unless the agent's `memory_config.enable_session_memory` is false, then a
    /// note per file of this turn. Each line ends with a newline.
    static func context(_ agent: AgentRecord, earlier: [SessionMessageRecord], items: [SessionContent]) -> String {
        var lines: [String] = []
        let memory = agent.document["memory_config"]?.objectValue?["enable_session_memory"]
        if memory != .bool(false) {
            for message in earlier where message.content["type"]?.stringValue == "data_type_message" {
                guard let value = message.content["value"]?.stringValue, !value.isEmpty else { continue }
                lines.append((message.sender["user_id"] != nil ? "User: " : "Assistant: ") + value)
            }
        }
        for case let .file(name, mimeType, bytes) in items {
            lines.append("User: [file \(name), \(mimeType), \(bytes.count) bytes]")
        }
        return lines.map { AgentHandlers.literal($0) + "\n" }.joined()
    }

    /// The answer's run: streams its tokens as deltas; its end is stored and notified as a chatbot session turn's
    /// (``ChatbotSessionTurn/finish(_:_:_:answer:)``). `terminate_session` terminates the run.
    static func runAnswer(_ app: MockShiftApp, _ turn: SessionTurn, _ plan: Plan) {
        let agent = plan.agent
        let llm = agent.document["llm_client_key"]?.objectValue ?? [:]
        var prompt = plan.context + "User: {{ \(inputNode).text }}"
        if let tool = plan.tool { prompt += "\n" + AgentHandlers.literal("Tool \(tool.name) was called; use its result.") }
        let nodes: JSONObject = [
            inputNode: ["id": .string(inputNode), "type": "input", "name": .string(inputNode),
                        "inputs": ["input_type": "string"], "outputs": ["text"]],
            llmNode: ["id": .string(llmNode), "type": "llm", "name": .string(llmNode), "outputs": ["response"],
                      "inputs": ["provider": llm["provider"] ?? "openai", "model": llm["model_id"] ?? "gpt-4o",
                                 "system": .string(AgentHandlers.literal(agent.document["instructions"]?.stringValue ?? "")),
                                 "prompt": .string(prompt), "stream": true]],
            answerOutput: ["id": .string(answerOutput), "type": "output", "name": .string(answerOutput),
                           "inputs": ["output_type": "string", "value": .string("{{ \(llmNode).response }}")], "outputs": ["value"]],
        ]
        var options = RunOptions()
        options.llmFailures = plan.llmFailures
        options.llmScripts = plan.script.map { [$0] } ?? []
        options.streamAllOutputs = true
        options.recorded = ["agent_id": .string(agent.id), "session_id": .string(plan.sessionID)]
        let engine = app.engine
        do {
            let run = try engine.start(namespace: agent.namespace, pipelineID: agent.id, nodes: nodes, version: agent.currentVersion,
                                       inputs: [inputNode: .string(plan.userText)], options: options, mode: .stream,
                                       observer: { event in
                switch event {
                case let .started(run):
                    turn.state.withLock { $0.runID = run.id }
                case let .tokens(outputs, tokens):
                    if outputs.contains(answerOutput) { turn.delta(tokens.joined()) }
                case let .output(name, value):
                    if name == answerOutput { turn.delta(value.stringValue ?? value.templateText) }
                }
            }, onFinish: { run in
                // A stopped or failed answer is what the client was sent.
                let answer = run.status == .completed
                    ? run.result?[answerOutput].map { $0.stringValue ?? $0.templateText } ?? ""
                    : turn.state.withLock { $0.text }
                ChatbotSessionTurn.finish(app, turn, run, answer: answer)
            })
            turn.onStop { engine.terminate(namespace: agent.namespace, pipelineID: agent.id, runID: run.id, reply: { _ in }) }
        } catch {
            fail(app, turn, error.message)
        }
    }

    /// Ends `turn` with an `error_message` (stored `Failed`), then `Idle`.
    static func fail(_ app: MockShiftApp, _ turn: SessionTurn, _ message: String) {
        turn.finish(app, content: ["type": "error_message", "error": .string(message), "value": "", "status": "Failed"],
                    notify: [ChatbotSessionTurn.notification(turn, ["type": "error_message", "error": .string(message)])])
    }

    /// Stores an agent message of `turn` (a tool call, an approval request) and notifies it unless silenced.
    @discardableResult
    static func notify(_ app: MockShiftApp, _ turn: SessionTurn, _ content: JSONObject) -> SessionMessageRecord {
        let message = SessionMessageRecord(id: IDs.make(), sessionID: turn.sessionID, sender: turn.sender, content: content,
                                           createdAt: wallClockMicros())
        do {
            try app.store.appendSessionMessage(message)
        } catch {
            app.logger.error("session \(turn.sessionID): message \(message.id) not stored: \(error)")
        }
        turn.send(SessionSocket.frame("message_notification", turn.sessionID, [("message", message.json)]))
        return message
    }

    /// `{"type":"tool_call","tool_name","tool_id","status":"Complete"}` (API-CHAT §2.4: the SDK's `TOOL_CALL`).
    static func notifyToolCall(_ app: MockShiftApp, _ turn: SessionTurn, _ tool: Tool) {
        notify(app, turn, ["type": "tool_call", "tool_name": .string(tool.name), "tool_id": .string(tool.id), "status": "Complete"])
    }

    // MARK: Approvals

    /// The approval request: stored, then (unless silenced) a `tool_call_approval` notification whose message id
    /// the reply names as `parent_message_id` (the SDK's `event.message_id`), and `AwaitingApproval`. The turn
    /// then waits, no timer running; `terminate_session` ends it as `Terminated`.
    static func askApproval(_ app: MockShiftApp, _ turn: SessionTurn, _ plan: Plan, _ tool: Tool) {
        let content: JSONObject = ["type": "tool_call_approval", "tool_id": .string(tool.id), "tool_name": .string(tool.name),
                                   "tool_call_id": .string(IDs.make()), "status": "Pending"]
        let message = SessionMessageRecord(id: IDs.make(), sessionID: turn.sessionID, sender: turn.sender, content: content,
                                           createdAt: wallClockMicros())
        do {
            try app.store.appendSessionMessage(message)
        } catch {
            return fail(app, turn, "the approval request could not be stored: \(error)")
        }
        // Set before the wait is announced: a terminate from now on ends the turn as `Terminated`.
        turn.onStop {
            turn.finish(app, content: ["type": "data_type_message", "value": "", "status": "Terminated"], notify: [])
        }
        turn.state.withLock { st in
            st.awaitingApproval = message.id
            st.onApproval = { decision in
                turn.status("Processing")
                switch decision {
                case .approve:
                    notifyToolCall(app, turn, tool)
                    runAnswer(app, turn, plan)
                case let .deny(reason):
                    let text = "I did not use the tool \(tool.name): \(reason)"
                    turn.delta(text)
                    let content: JSONObject = ["type": "data_type_message", "value": .string(text), "status": "Complete"]
                    turn.finish(app, content: content, notify: [ChatbotSessionTurn.notification(turn, content)])
                }
            }
        }
        turn.send(SessionSocket.frame("message_notification", turn.sessionID, [("message", message.json)]))
        turn.status("AwaitingApproval")
    }

    /// The parent message id and decision of an approval reply (`content` `{"type_string":"response_message",
    /// "value":{"tool_call_approval":{"confirm":{…}}|{"deny":"reason"}}}`), nil for any other `post_message`.
    /// Throws ``SessionSocket/FrameError`` for a malformed reply.
    static func approvalReply(in frame: JSONObject) throws -> (parent: String, decision: ApprovalDecision)? {
        guard let content = frame["content"]?.objectValue, content["type_string"]?.stringValue == "response_message" else { return nil }
        guard let approval = content["value"]?.objectValue?["tool_call_approval"]?.objectValue else {
            throw SessionSocket.FrameError("a response_message needs value.tool_call_approval with confirm (an object) or deny (a reason)")
        }
        let decision: ApprovalDecision
        if let confirm = approval["confirm"], confirm != .null {
            guard confirm.objectValue != nil else { throw SessionSocket.FrameError("tool_call_approval.confirm must be an object") }
            decision = .approve
        } else if let deny = approval["deny"], deny != .null {
            guard let reason = deny.stringValue else { throw SessionSocket.FrameError("tool_call_approval.deny must be a reason (a string)") }
            decision = .deny(reason: reason.isEmpty ? "User denied tool call." : reason)
        } else {
            throw SessionSocket.FrameError("tool_call_approval needs confirm (an object) or deny (a reason)")
        }
        guard let parent = frame["parent_message_id"]?.stringValue, !parent.isEmpty else {
            throw SessionSocket.FrameError("an approval reply needs parent_message_id (the approval request's message id)")
        }
        return (parent, decision)
    }

    /// An approval reply (SPEC §10–§11): for the approval the session's live turn waits for, stores the reply, acks
    /// it (`post_message` `success:true` with its `message_id`) and goes on. A duplicate (the same decision for an
    /// approval already decided so) is acked with `duplicate:true` and changes nothing. Throws
    /// ``SessionSocket/FrameError`` (an `error` frame) for an approval the session does not have, one decided the
    /// other way, or one whose turn ended undecided (terminated, interrupted).
    static func answer(_ app: MockShiftApp, session: SessionRecord, parent: String, decision: ApprovalDecision,
                       socket: SessionSocket) throws {
        let reply: JSONObject = [
            "type": "response_message", "parent_message_id": .string(parent), "decision": .string(decision.word),
            "value": ["tool_call_approval": decision == .approve ? ["confirm": [:]] : ["deny": .string(reasonOf(decision))]],
        ]
        if let turn = app.sessionHub.live(session.id), turn.namespace == session.namespace, let proceed = turn.takeApproval(parent) {
            let id = IDs.make()
            try app.store.appendSessionMessage(SessionMessageRecord(id: id, sessionID: session.id, sender: SessionSocket.userSender,
                                                                    content: reply, createdAt: wallClockMicros()))
            socket.send(SessionSocket.frame("post_message", session.id, [("success", true), ("message_id", .string(id))]))
            proceed(decision)
            return
        }
        let messages = try app.store.sessionMessages(namespace: session.namespace, sessionID: session.id)
        guard messages.contains(where: { $0.id == parent && $0.content["type"]?.stringValue == "tool_call_approval" }) else {
            throw SessionSocket.FrameError("session \(session.id) has no approval request \(SessionSocket.short(parent))")
        }
        guard let earlier = messages.first(where: {
            $0.content["type"]?.stringValue == "response_message" && $0.content["parent_message_id"]?.stringValue == parent
        }) else {
            throw SessionSocket.FrameError("approval \(parent) is no longer pending: its turn ended without a decision")
        }
        let word = earlier.content["decision"]?.stringValue ?? ""
        guard word == decision.word else { throw SessionSocket.FrameError("approval \(parent) was already \(word)") }
        socket.send(SessionSocket.frame("post_message", session.id, [("success", true), ("message_id", .string(earlier.id)),
                                                                     ("duplicate", true)]))
    }

    private static func reasonOf(_ decision: ApprovalDecision) -> String {
        if case let .deny(reason) = decision { return reason }
        return ""
    }
}

extension SessionTurn {
    /// Takes the continuation of approval `id`: nil unless the turn waits for exactly that approval and is neither
    /// silenced nor ended. Once taken, the wait's stop is cleared (the continuation sets its own, or ends the turn),
    /// so a `terminate_session` racing the reply stops whatever the reply started.
    func takeApproval(_ id: String) -> (@Sendable (ApprovalDecision) -> Void)? {
        state.withLock { st in
            guard st.awaitingApproval == id, !st.silenced, !st.ended, let proceed = st.onApproval else { return nil }
            st.awaitingApproval = nil
            st.onApproval = nil
            st.stop = nil
            return proceed
        }
    }
}
