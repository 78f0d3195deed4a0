
/// Scripted LLM answers (`/_mock/llm`, fixtures; SPEC §6): rules per namespace, matched on the pipeline (by id or
/// name) here and on node id and prompt by the engine (``LLMScript``). Newest rule first.
final class LLMScripts: Sendable {
    struct Rule: NamespacedRule {
        static let idKey = "script_id"
        let id: String
        let namespace: String
        let pipelineID: String?
        let pipelineName: String?
        let script: LLMScript
        let json: JSONObject
    }

    private let book = RuleBook<Rule>()

    /// Parses and stores a rule; throws `.badRequest` naming the field.
    static let fields: Set<String> = ["pipeline_id", "pipeline_name", "node_id", "prompt_pattern", "response", "ttft_ms",
                                      "tokens_per_second", "fail_after_tokens", "message"]

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
        guard script.response != nil || script.ttftMilliseconds != nil || script.tokensPerSecond != nil || failAfter != nil else {
            throw APIError(.badRequest, "a scripted answer needs one of response, ttft_ms, tokens_per_second, fail_after_tokens")
        }
        let id = IDs.make()
        var echo = body
        echo["script_id"] = .string(id)
        let rule = Rule(id: id, namespace: namespace, pipelineID: try body.string("pipeline_id"),
                        pipelineName: try body.string("pipeline_name"), script: script, json: echo)
        try book.add(rule, atFront: true)
        return rule
    }

    /// The scripts that may apply to a run of `pipeline` in `namespace`, newest first.
    func scripts(namespace: String, pipeline: PipelineRecord) -> [LLMScript] {
        book.list(namespace: namespace).filter { rule in
            (rule.pipelineID.map { $0 == pipeline.id } ?? true) && (rule.pipelineName.map { $0 == pipeline.name } ?? true)
        }.map(\.script)
    }

    func list(namespace: String) -> [JSONObject] { book.list(namespace: namespace).map(\.json) }

    func clear(namespace: String) -> Int { book.clear(namespace: namespace) }
    func namespaces() -> Set<String> { book.namespaces() }
}
