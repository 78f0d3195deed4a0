/// What evaluating one node gives: outputs at once, or an LLM completion to emit over time.
enum NodeEvaluation {
    /// Outputs available now (field → value).
    case done(JSONObject)
    /// A simulated LLM call: the node's outputs appear when its last token is emitted.
    case llm(LLMCompletion)
}

/// Evaluates single nodes (SPEC §6, API.md §7). Input, output and LLM nodes have their real meaning; every
/// other type gets a deterministic placeholder for each output it declares. Basic nodes (text, merge,
/// condition, ...) will get their real semantics here (issue 6) without touching the run engine.
enum NodeEvaluator {
    /// Evaluates `node` with its inputs already template-resolved. `runInputs` are the run's inputs keyed by
    /// input-node name.
    static func evaluate(_ node: GraphNode, resolvedInputs inputs: JSONObject, runInputs: JSONObject, seed: UInt64) -> NodeEvaluation {
        switch node.type {
        case "input":
            let value = runInputs[node.name] ?? runInputs[node.id] ?? inputs["default_value"] ?? .string("")
            var outputs = JSONObject()
            let fields = node.declaredOutputs.isEmpty ? [inputFieldName(inputs["input_type"]?.stringValue)] : node.declaredOutputs
            for field in fields { outputs[field] = value }
            outputs["complete"] = .bool(true)
            return .done(outputs)
        case "output":
            return .done(["value": inputs["value"] ?? .null, "complete": .bool(true)])
        case "llm":
            let request = LLMRequest(
                provider: inputs["provider"]?.templateText ?? "openai",
                model: inputs["model"]?.templateText ?? "gpt-4o",
                system: inputs["system"]?.templateText ?? "",
                prompt: inputs["prompt"]?.templateText ?? "",
                maxTokens: Int(inputs["max_tokens"]?.intValue ?? 128_000),
                seed: seed)
            return .llm(LLMSimulator.complete(request))
        default:
            var outputs = JSONObject()
            for field in node.declaredOutputs {
                outputs[field] = .string("[mock \(node.type) \(node.id).\(field)]")
            }
            outputs["complete"] = .bool(true)
            return .done(outputs)
        }
    }

    /// The output field an input node fills for its `input_type` (API.md §7).
    static func inputFieldName(_ type: String?) -> String {
        switch type ?? "string" {
        case "string": "text"
        case "file": "processed_text"
        default: "value"
        }
    }

    /// Names of input nodes that the run's inputs do not cover and that have no default to fall back on.
    static func missingInputs(_ graph: PipelineGraph, runInputs: JSONObject) -> [String] {
        graph.nodes.filter { node in
            node.type == "input" && runInputs[node.name] == nil && runInputs[node.id] == nil
                && node.inputs["use_default_value"]?.boolValue != true
        }.map(\.name)
    }
}
