
/// Scripted LLM answers (`/_mock/llm`, fixtures; SPEC §6, §11): rules per namespace, matched here on what runs
/// (a pipeline by id or name, a chatbot's turns by `chatbot_id`, a conversational agent's turns by `agent_id` or
/// `agent_name`) and on node (`node_id`, or `node`: id or name) and prompt (`prompt_pattern`, or `prompt` exactly)
/// by the engine (``LLMScript``). A recorded answer (issue 15 item 3) also gives its `tokens` and
/// `token_offsets_ms`. A rule naming an agent applies to that agent's session turns only, and may say which of its
/// tools the agent calls (`tool`); a rule naming a chatbot applies to that chatbot's turns only (HTTP or session);
/// other rules apply to pipeline runs and chatbot turns. Newest rule first.
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

    /// The fields a rule may have (any other is a 400).
    static let fields: Set<String> = ["pipeline_id", "pipeline_name", "node_id", "node", "prompt_pattern", "prompt", "response",
                                      "tokens", "token_offsets_ms", "ttft_ms", "tokens_per_second", "fail_after_tokens",
                                      "message", "chatbot_id", "agent_id", "agent_name", "tool"]

    /// Largest recorded offset, in simulated milliseconds (a day, as `ttft_ms`).
    static let longestOffsetMilliseconds: Double = 86_400_000

    /// Parses and stores a rule; throws `.badRequest` naming the field.
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
        var script = LLMScript(
            nodeID: try body.string("node_id"), promptPattern: pattern, response: try body.string("response"),
            ttftMilliseconds: try number("ttft_ms", 0...86_400_000), tokensPerSecond: try number("tokens_per_second", 0.001...1_000_000),
            failAfterTokens: failAfter, message: try body.string("message") ?? "scripted LLM failure")
        try Self.recorded(body, into: &script)
        let tool = try body.string("tool")
        let agentID = try body.string("agent_id"), agentName = try body.string("agent_name")
        let chatbotID = try body.string("chatbot_id")
        guard script.response != nil || script.ttftMilliseconds != nil || script.tokensPerSecond != nil || failAfter != nil
                || tool != nil else {
            throw APIError(.badRequest, "a scripted answer needs one of response, tokens, ttft_ms, tokens_per_second, fail_after_tokens, tool")
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

    /// Reads the fields of a recorded answer (issue 15 item 3) into `script`: `node` (an LLM node's id or name),
    /// `prompt` (the whole resolved prompt, matched literally), `tokens` (the answer as streamed: non-empty strings
    /// whose concatenation is `response`, which may then be left out) and `token_offsets_ms` (one per token,
    /// non-decreasing, from 0 to a day: simulated ms from the node's start to each token; it replaces `ttft_ms` and
    /// `tokens_per_second`, which it cannot be combined with). Throws a 400 naming the field.
    static func recorded(_ body: JSONObject, into script: inout LLMScript) throws {
        if let node = try body.string("node") {
            guard !node.isEmpty else { throw APIError(.badRequest, "node must name an LLM node (its id or name)") }
            if body["node_id"] != nil && body["node_id"] != .null {
                throw APIError(.badRequest, "node and node_id cannot both be given: node matches an id or a name")
            }
            script.node = node
        }
        if let prompt = try body.string("prompt") {
            if let pattern = body["prompt_pattern"], pattern != .null {
                throw APIError(.badRequest, "prompt and prompt_pattern cannot both be given: prompt matches the whole prompt exactly")
            }
            script.prompt = prompt
        }
        if let items = try body.list("tokens") {
            var tokens: [String] = []
            tokens.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                guard let token = item.stringValue else { throw APIError(.badRequest, "tokens[\(i)] must be a string") }
                guard !token.isEmpty else { throw APIError(.badRequest, "tokens[\(i)] is empty: every token has some text") }
                tokens.append(token)
            }
            let given = script.response
            script.setTokens(tokens)
            if let given, given != script.response {
                let joined = script.response ?? ""
                let at = zip(given, joined).prefix { $0 == $1 }.count
                throw APIError(.badRequest, "tokens do not concatenate to response (they differ from character \(at) on)")
            }
        }
        if let items = try body.list("token_offsets_ms") {
            guard let ends = script.tokenEnds else {
                throw APIError(.badRequest, "token_offsets_ms needs tokens: one offset per token")
            }
            guard items.count == ends.count else {
                throw APIError(.badRequest, "token_offsets_ms has \(items.count) offset(s) for \(ends.count) token(s): give one per token")
            }
            for key in ["ttft_ms", "tokens_per_second"] where body[key] != nil && body[key] != .null {
                throw APIError(.badRequest, "\(key) cannot be combined with token_offsets_ms, which times every token (its first offset is the time to first token)")
            }
            var offsets: [Double] = []
            offsets.reserveCapacity(items.count)
            for (i, item) in items.enumerated() {
                let ms: Double? = switch item { case .int, .double: item.doubleValue; default: nil }
                guard let ms, ms >= 0, ms <= longestOffsetMilliseconds else {
                    throw APIError(.badRequest, "token_offsets_ms[\(i)] must be a number from 0 to \(Int(longestOffsetMilliseconds))")
                }
                offsets.append(ms)
            }
            for i in offsets.indices.dropFirst() where offsets[i] < offsets[i - 1] {
                throw APIError(.badRequest, "token_offsets_ms[\(i)] (\(offsets[i])) is less than token_offsets_ms[\(i - 1)] (\(offsets[i - 1])): offsets must not decrease")
            }
            script.tokenOffsetsMilliseconds = offsets
        }
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
