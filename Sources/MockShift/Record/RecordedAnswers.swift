import Foundation

/// One pipeline run seen through the recording proxy (`serve --record`, issue 15 item 2): what ran, with what, and
/// what came back when. Times are milliseconds on one clock of the recorder's (their origin does not matter).
public struct ObservedRun: Sendable {
    /// The pipeline's name (scripted answers match pipelines by name) and the nodes that ran (the working state, or
    /// the deployed version the request named).
    public var pipelineName: String
    public var nodes: JSONObject
    /// The run's `inputs` (by input-node name) and `node_input_overrides`.
    public var inputs: JSONObject
    public var overrides: JSONObject = [:]
    /// The final outputs, by output-node name.
    public var outputs: JSONObject = [:]
    /// When the stream's `start` event arrived (streamed runs only).
    public var startedAt: Double?
    /// The tokens of each streamed output (`stream` events), by output-node name, with their arrival times.
    public var tokens: [String: [(text: String, at: Double)]] = [:]

    public init(pipelineName: String, nodes: JSONObject, inputs: JSONObject) {
        self.pipelineName = pipelineName
        self.nodes = nodes
        self.inputs = inputs
    }
}

/// Turns an observed run into scripted answers (the rules `POST /_mock/llm` and fixture files' `llm` take), one per
/// text-generating node whose answer the run shows (issue 15 item 2):
///
/// `{"pipeline_name", "node_id", "prompt_pattern", "response"?, "tokens"?, "token_offsets_ms"?}`
///
/// - `prompt_pattern` is the node's prompt as MockShift's engine resolves it (``Templates`` over the run's inputs
///   and the nodes before it, each evaluated as the engine evaluates it, the recorded answers standing for the
///   text-generating nodes), escaped and anchored: `^…$` (a POSIX extended regular expression, ``PromptPattern``;
///   of a prompt longer than ``PromptPattern/searchedPrefix`` characters, the part that is searched).
/// - `response` is the node's answer: the value of an output node whose `value` is exactly `{{ node.response }}`
///   (the field the node type answers in: `summary` for a summarizer, …), else its streamed tokens joined.
/// - Streamed runs add the timing: `tokens` (the text of each `stream` event, as it came) and `token_offsets_ms`
///   (when each arrived, in ms after the node started: the first is the measured time to first token), which a
///   replay streams exactly (``LLMScript``); `response` is then left out unless it is the tokens joined. A node
///   starts at the stream's `start` event, or once the last token of the text-generating nodes it waits for has
///   arrived. Runs that do not stream give the response alone.
///
/// Nodes whose answer the run does not show (no output carries it, a skipped path), and those whose prompt depends
/// on such a node, give no rule.
public enum RecordedAnswers {
    /// The scripted answers of `run`, by node id order of evaluation.
    public static func rules(for run: ObservedRun) -> [JSONObject] {
        guard let graph = try? PipelineGraph(nodes: run.nodes, overrides: run.overrides) else { return [] }
        // Which output shows which node's answer: an output whose value is exactly one template naming the
        // node's response field.
        var shownBy: [String: [String]] = [:]  // text node id → output names
        for node in graph.nodes where node.type == "output" {
            guard case let .string(text)? = node.inputs["value"] else { continue }
            let found = Templates.matches(in: text)
            guard found.count == 1, text.trimmingCharacters(in: .whitespacesAndNewlines).utf8.count == found[0].range.count
            else { continue }
            let target = graph.nodeID(for: found[0].reference.node)
            guard let generator = graph.nodes.first(where: { $0.id == target }),
                  let field = NodeEvaluator.textGenerators[generator.type], field == found[0].reference.field else { continue }
            shownBy[target, default: []].append(node.name)
        }
        var outputs: [String: JSONObject] = [:]
        var unknown = Set<String>()
        var lastToken: [String: Double] = [:]  // text node id → arrival of its last token
        var ancestors: [String: Set<String>] = [:]
        var rules: [JSONObject] = []
        for node in graph.nodes {
            ancestors[node.id] = node.dependencies.reduce(into: Set(node.dependencies)) { $0.formUnion(ancestors[$1] ?? []) }
            if node.dependencies.contains(where: unknown.contains) {
                unknown.insert(node.id)
                continue
            }
            let resolved = Templates.resolve(.object(node.inputs)) { reference in
                outputs[graph.nodeID(for: reference.node)]?[reference.field]
            }.objectValue ?? [:]
            if let field = NodeEvaluator.textGenerators[node.type] {
                let names = (shownBy[node.id] ?? []).sorted()
                let streamed = names.lazy.compactMap { name in run.tokens[name].map { (name, $0) } }.first(where: { !$0.1.isEmpty })
                let text = names.lazy.compactMap { run.outputs[$0]?.stringValue }.first
                    ?? streamed.map { $0.1.map(\.text).joined() }
                guard let text else {
                    unknown.insert(node.id)
                    continue
                }
                outputs[node.id] = [field: .string(text), "complete": .bool(true)]
                var rule: JSONObject = [
                    "pipeline_name": .string(run.pipelineName), "node_id": .string(node.id),
                    "prompt_pattern": .string(anchoredPattern(resolved["prompt"]?.templateText ?? "")),
                    "response": .string(text),
                ]
                if let tokens = streamed?.1, let runStart = run.startedAt {
                    let start = (ancestors[node.id] ?? []).compactMap { lastToken[$0] }.reduce(runStart, max)
                    let offsets = tokens.map { max(0, $0.at - start) }
                    // The replay streams exactly these tokens at these offsets (a rule with offsets takes no
                    // `ttft_ms` or `tokens_per_second`); the text is theirs, so `response` stays only if it agrees.
                    rule["tokens"] = .array(tokens.map { .string($0.text) })
                    rule["token_offsets_ms"] = .array(offsets.map { .double(rounded($0)) })
                    if tokens.map(\.text).joined() != text { rule["response"] = nil }
                    lastToken[node.id] = tokens.last!.at
                }
                rules.append(rule)
                continue
            }
            switch NodeEvaluator.evaluate(node, resolvedInputs: resolved, runInputs: run.inputs, seed: 0) {
            case let .done(values), let .wait(_, values): outputs[node.id] = values
            case .llm, .failed: unknown.insert(node.id)
            }
        }
        return rules
    }

    /// `prompt` as a POSIX extended regular expression matching exactly it: `^`, each character special to ERE
    /// escaped, `$`. Only the first ``PromptPattern/searchedPrefix`` characters are searched by the engine, so a
    /// longer prompt's pattern is that prefix's.
    public static func anchoredPattern(_ prompt: String) -> String {
        let searched = prompt.count > PromptPattern.searchedPrefix ? String(prompt.prefix(PromptPattern.searchedPrefix)) : prompt
        var out = "^"
        for ch in searched {
            if ".[]()*+?{}|^$\\".contains(ch) { out.append("\\") }
            out.append(ch)
        }
        return out + "$"
    }

    /// Milliseconds to a tenth.
    static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }
}
