/// What evaluating one node gives: outputs at once, or an LLM completion to emit over time.
enum NodeEvaluation {
    /// Outputs available now (field → value).
    case done(JSONObject)
    /// A simulated LLM call: the node's outputs appear when its last token is emitted.
    case llm(LLMCompletion)
    /// A timed node (`wait_node`): its outputs appear after `milliseconds` of simulated time.
    case wait(milliseconds: Double, outputs: JSONObject)
    /// The node cannot run (`--strict-nodes` and an unsupported type): the run fails with this message.
    case unsupported(String)
}

/// Evaluates single nodes (SPEC §6, API.md §7). Input, output, LLM and the basic nodes (``BasicNodes``) have
/// their real meaning; `wait_node` waits; every other type gets a deterministic placeholder for each output it
/// declares, or, with `strict`, cannot run.
enum NodeEvaluator {
    /// Evaluates `node` with its inputs already template-resolved. `runInputs` are the run's inputs keyed by
    /// input-node name.
    static func evaluate(_ node: GraphNode, resolvedInputs inputs: JSONObject, runInputs: JSONObject, seed: UInt64,
                         strict: Bool = false) -> NodeEvaluation {
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
        case "wait_node":
            let amount = inputs["wait_time"]?.doubleValue ?? 1
            let unit: Double = switch inputs["wait_time_type"]?.stringValue ?? "seconds" {
            case "milliseconds": 1
            case "minutes": 60_000
            case "hours": 3_600_000
            default: 1000
            }
            return .wait(milliseconds: max(0, amount * unit), outputs: ["status": "completed", "complete": .bool(true)])
        default:
            if var outputs = BasicNodes.evaluate(type: node.type, inputs) {
                outputs["complete"] = .bool(true)
                return .done(outputs)
            }
            if strict { return .unsupported("node \(node.id): node type '\(node.type)' is not supported by MockShift (--strict-nodes)") }
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
