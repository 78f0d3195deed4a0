
/// Scripted LLM answers (`/_mock/llm`, fixtures; SPEC §6, §11): rules per namespace, matched here on what runs
/// (a pipeline by id or name, a chatbot's turns by `chatbot_id`, a conversational agent's turns by `agent_id` or
/// `agent_name`) and on node id and prompt by the engine (``LLMScript``). A rule naming an agent applies to that
/// agent's session turns only, and may say which of its tools the agent calls (`tool`); a rule naming a chatbot
/// applies to that chatbot's turns only (HTTP or session); other rules apply to pipeline runs and chatbot turns.
/// Newest rule first.
final class LLMScripts: Sendable {
    struct Rule: NamespacedRule {
        static let idKey = "script_id"
        let id: String
        let namespace: String
        let pipelineID: String?
        let pipelineName: String?
        let chatbotID: String?
        let agentID: String?
        let agentName: String?
        /// The tool (name or id) a conversational agent calls in a turn this rule matches (SPEC §11).
        let tool: String?
        let script: LLMScript
        let json: JSONObject
    }

    private let book = RuleBook<Rule>()

    /// Parses and stores a rule; throws `.badRequest` naming the field.
    static let fields: Set<String> = ["pipeline_id", "pipeline_name", "node_id", "prompt_pattern", "response", "ttft_ms",
                                      "tokens_per_second", "fail_after_tokens", "message", "chatbot_id", "agent_id",
                                      "agent_name", "tool"]

    @discardableResult
    func add(namespace: String, _ body: JSONObject) throws -> Rule {
        if let unknown = body.keys.first(where: { !LLMScripts.fields.contains($0) }) {
            throw APIError(.badRequest, "unknown field '\(unknown)' (known: \(LLMScripts.fields.sorted().joined(separator: ", ")))")
        }
        func number(_ key: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let raw = body[key], raw != .null else { return nil }
            guard let d = raw.doubleValue, d.isFinite, range.contains(d) else {
                throw APIError(.badRequest, "\(key) must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return d
        }
        let pattern = try body.string("prompt_pattern")
        if let pattern, !pattern.isEmpty, PromptPattern(pattern) == nil {
            throw APIError(.badRequest, "prompt_pattern is not a valid POSIX extended regular expression (back-references are not allowed)")
        }
        var failAfter: Int?
        if let d = try number("fail_after_tokens", 0...1_000_000) {
            guard let n = Int(exactly: d) else { throw APIError(.badRequest, "fail_after_tokens must be a whole number") }
            failAfter = n
        }
        let script = LLMScript(
            nodeID: try body.string("node_id"), promptPattern: pattern, response: try body.string("response"),
            ttftMilliseconds: try number("ttft_ms", 0...86_400_000), tokensPerSecond: try number("tokens_per_second", 0.001...1_000_000),
            failAfterTokens: failAfter, message: try body.string("message") ?? "scripted LLM failure")
        let tool = try body.string("tool")
        let agentID = try body.string("agent_id"), agentName = try body.string("agent_name")
        let chatbotID = try body.string("chatbot_id")
        guard script.response != nil || script.ttftMilliseconds != nil || script.tokensPerSecond != nil || failAfter != nil
                || tool != nil else {
            throw APIError(.badRequest, "a scripted answer needs one of response, ttft_ms, tokens_per_second, fail_after_tokens, tool")
        }
        if let tool, tool.isEmpty { throw APIError(.badRequest, "tool must name a tool of the agent (its name or id)") }
        let forAgent = agentID != nil || agentName != nil
        if forAgent, ["pipeline_id", "pipeline_name", "chatbot_id"].contains(where: { body[$0] != nil && body[$0] != .null }) {
            throw APIError(.badRequest, "a scripted answer for an agent (agent_id, agent_name) cannot also name a pipeline or chatbot")
        }
        if tool != nil, !forAgent {
            throw APIError(.badRequest, "tool needs agent_id or agent_name: only conversational agents call tools")
        }
        let id = IDs.make()
        var echo = body
        echo["script_id"] = .string(id)
        let rule = Rule(id: id, namespace: namespace, pipelineID: try body.string("pipeline_id"),
                        pipelineName: try body.string("pipeline_name"), chatbotID: chatbotID, agentID: agentID,
                        agentName: agentName, tool: tool, script: script, json: echo)
        try book.add(rule, atFront: true)
        return rule
    }

    /// The scripts that may apply to a run of `pipeline` in `namespace`, newest first: for a chatbot's turn
    /// (`chatbotID`) also the rules naming that chatbot; never rules naming an agent.
    func scripts(namespace: String, pipeline: PipelineRecord, chatbotID: String? = nil) -> [LLMScript] {
        book.list(namespace: namespace).filter { rule in
            rule.agentID == nil && rule.agentName == nil && (rule.chatbotID.map { $0 == chatbotID } ?? true)
                && (rule.pipelineID.map { $0 == pipeline.id } ?? true) && (rule.pipelineName.map { $0 == pipeline.name } ?? true)
        }.map(\.script)
    }

    /// The rules that may apply to a session turn of conversational agent `agent`, newest first: those naming it
    /// (`agent_id`, `agent_name`) and those naming no pipeline, chatbot or agent.
    func rules(namespace: String, agent: AgentRecord) -> [Rule] {
        book.list(namespace: namespace).filter { rule in
            rule.pipelineID == nil && rule.pipelineName == nil && rule.chatbotID == nil
                && (rule.agentID.map { $0 == agent.id } ?? true) && (rule.agentName.map { $0 == agent.name } ?? true)
        }
    }

    func list(namespace: String) -> [JSONObject] { book.list(namespace: namespace).map(\.json) }

    func clear(namespace: String) -> Int { book.clear(namespace: namespace) }
    func namespaces() -> Set<String> { book.namespaces() }
}
