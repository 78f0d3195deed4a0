import Foundation
import Synchronization

/// Injected faults (SPEC §7 `POST /_mock/faults`, issue 4): rules per namespace, matched on method, path
/// pattern and pipeline, that answer with a given status and body, add a delay, drop the connection, or make
/// LLM nodes of runs they match fail after N tokens. Each rule applies `times` times (unlimited when absent),
/// each match drawn with `probability` from a generator seeded by `serve --seed`, so a test is repeatable.
final class Faults: Sendable {
    struct Rule: NamespacedRule {
        static let idKey = "fault_id"
        let id: String
        let namespace: String
        let method: String?
        /// Glob over the path: `*` matches within one segment, `**` across segments.
        let path: String?
        let pipelineID: String?
        let status: Int?
        let body: JSON?
        let delayMs: Double
        let drop: Bool
        /// LLM failure: node id (nil = every LLM node), after how many tokens, with which message.
        let llmNode: String?
        let llmFailAfter: Int?
        let llmMessage: String
        /// Streams (SSE) of the request: events sent before the connection is dropped.
        let cutStreamAfter: Int?
        var remaining: Int?
        let probability: Double
        let json: JSONObject
    }

    /// What a matching rule does to one request.
    struct Effect: Sendable {
        var delayMs: Double = 0
        var response: (status: Int, body: JSON)?
        var drop = false
        var llmFailures: [RunOptions.LLMFailure] = []
        /// A stream the request opens is cut (connection dropped, no terminal event) after this many events.
        var cutStreamAfter: Int?
    }

    private let book = RuleBook<Rule>()
    /// Draws for `probability`: seeded, so a run of a test suite repeats.
    private let random: Mutex<SeededGenerator>

    init(seed: UInt64) { random = Mutex(SeededGenerator(seed: seed ^ 0xFA17)) }

    /// Parses and stores a rule; throws `.badRequest` naming the field.
    static let fields: Set<String> = ["method", "path", "pipeline_id", "status", "body", "delay_ms", "drop",
                                      "node_id", "llm_fail_after_tokens", "message", "cut_stream_after_events", "times",
                                      "probability"]

    func add(namespace: String, _ body: JSONObject) throws -> Rule {
        if let unknown = body.keys.first(where: { !Faults.fields.contains($0) }) {
            throw APIError(.badRequest, "unknown fault field '\(unknown)' (known: \(Faults.fields.sorted().joined(separator: ", ")))")
        }
        let method = try body.string("method")?.uppercased()
        let path = try body.string("path")
        if let path, !path.hasPrefix("/") { throw APIError(.badRequest, "path must start with /") }
        if let path, path.utf8.count > 1024 { throw APIError(.badRequest, "path must be at most 1024 characters") }
        let status: Int?
        if let raw = body["status"], raw != .null {
            // 1xx are interim answers, never a final one: a client given one waits for the real answer forever.
            guard let s = raw.intValue, (200...599).contains(s) else { throw APIError(.badRequest, "status must be an HTTP status code from 200 to 599") }
            status = Int(s)
        } else { status = nil }
        // A field given but not a number is a 400 too, not its default (`"abc"` used to mean no delay).
        func number(_ key: String, default value: Double) -> Double? {
            guard let raw = body[key], raw != .null else { return value }
            return raw.doubleValue
        }
        guard let delay = number("delay_ms", default: 0), (0...600_000).contains(delay) else {
            throw APIError(.badRequest, "delay_ms must be a number from 0 to 600000")
        }
        let drop = try body.bool("drop")
        var failAfter: Int?
        if let raw = body["llm_fail_after_tokens"], raw != .null {
            guard let n = raw.intValue, n >= 0 else { throw APIError(.badRequest, "llm_fail_after_tokens must be a whole number >= 0") }
            failAfter = Int(n)
        }
        var cutAfter: Int?
        if let raw = body["cut_stream_after_events"], raw != .null {
            guard let n = raw.intValue, n >= 0 else { throw APIError(.badRequest, "cut_stream_after_events must be a whole number >= 0") }
            cutAfter = Int(n)
        }
        var times: Int?
        if let raw = body["times"], raw != .null {
            guard let n = raw.intValue, n >= 1 else { throw APIError(.badRequest, "times must be a whole number >= 1") }
            times = Int(n)
        }
        guard let probability = number("probability", default: 1), (0...1).contains(probability) else {
            throw APIError(.badRequest, "probability must be a number from 0 to 1")
        }
        guard status != nil || drop || failAfter != nil || cutAfter != nil || delay > 0 else {
            throw APIError(.badRequest, "a fault needs one of status, delay_ms, drop, llm_fail_after_tokens, cut_stream_after_events")
        }
        let id = IDs.make()
        var echo = body
        echo["fault_id"] = .string(id)
        let rule = Rule(id: id, namespace: namespace, method: method, path: path, pipelineID: try body.string("pipeline_id"),
                        status: status, body: body["body"], delayMs: delay, drop: drop, llmNode: try body.string("node_id"),
                        llmFailAfter: failAfter, llmMessage: try body.string("message") ?? "injected LLM failure",
                        cutStreamAfter: cutAfter, remaining: times, probability: probability, json: echo)
        try book.add(rule)
        return rule
    }

    func list(namespace: String) -> [JSONObject] {
        book.list(namespace: namespace).map { rule in
            var o = rule.json
            if let r = rule.remaining { o["remaining"] = .int(Int64(r)) }
            return o
        }
    }

    /// Removes the namespace's rules; returns how many.
    func clear(namespace: String) -> Int { book.clear(namespace: namespace) }
    func namespaces() -> Set<String> { book.namespaces() }

    /// The effect of the first rule that matches this request (and is drawn), using up one of its times.
    func match(namespace: String, method: String, path: String) -> Effect? {
        book.withRules(namespace: namespace) { rules in
            for i in rules.indices {
                let rule = rules[i]
                guard rule.remaining != 0,
                      rule.method == nil || rule.method == method,
                      rule.path.map({ Faults.glob($0, matches: path) }) ?? true,
                      rule.pipelineID.map({ Faults.pipeline(in: path) == $0 }) ?? true else { continue }
                if rule.probability < 1 {
                    let draw = random.withLock { Double($0.next() >> 11) / Double(1 << 53) }
                    if draw >= rule.probability { continue }
                }
                if let r = rule.remaining { rules[i].remaining = r - 1 }
                var effect = Effect(delayMs: rule.delayMs, drop: rule.drop, cutStreamAfter: rule.cutStreamAfter)
                if let status = rule.status {
                    effect.response = (status, rule.body ?? ["status": "failed", "error": .string("injected fault \(rule.id)")])
                }
                if let after = rule.llmFailAfter {
                    effect.llmFailures = [RunOptions.LLMFailure(nodeID: rule.llmNode, afterTokens: after, message: rule.llmMessage)]
                }
                return effect
            }
            return nil
        }
    }

    /// The pipeline id in `/v1/pipeline/{id}/…` or `/v1/update/pipeline/{id}`.
    static func pipeline(in path: String) -> String? {
        let parts = path.split(separator: "/")
        guard let i = parts.firstIndex(of: "pipeline"), i + 1 < parts.count else { return nil }
        return String(parts[i + 1])
    }

    /// Glob match: `*` = any characters but `/`, `**` = any characters, everything else literal. One pass per
    /// pattern element over the set of path positions reachable so far: pattern length × path length steps at
    /// most, whatever the stars (a memoised backtracking version still cost seconds on long paths; newcomer
    /// review).
    static func glob(_ pattern: String, matches path: String) -> Bool {
        let p = Array(pattern.utf8), s = Array(path.utf8)
        let slash = UInt8(ascii: "/"), star = UInt8(ascii: "*")
        var reach = [Bool](repeating: false, count: s.count + 1)
        reach[0] = true
        var i = 0
        while i < p.count {
            var next = [Bool](repeating: false, count: s.count + 1)
            if p[i] == star {
                let deep = i + 1 < p.count && p[i + 1] == star
                var on = false
                for j in 0...s.count {
                    if reach[j] { on = true }
                    next[j] = on
                    if !deep, j < s.count, s[j] == slash { on = false }  // `*` stops at a slash
                }
                i += deep ? 2 : 1
            } else {
                for j in 0..<s.count where reach[j] && s[j] == p[i] { next[j + 1] = true }
                i += 1
            }
            reach = next
            if !reach.contains(true) { return false }
        }
        return reach[s.count]
    }
}
