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
            let value = inputValue(node, inputs, runInputs: runInputs)
            var outputs = JSONObject()
            if inputs["input_type"]?.stringValue == "file" {
                // A file input (API.md §4.5): {"file_name", "content_type", "size", "text" or "base64"}.
                let file = value.objectValue ?? ["file_name": "file", "text": .string(value.templateText)]
                outputs["file"] = .object(file)
                outputs["file_name"] = file["file_name"] ?? "file"
                outputs["processed_text"] = file["text"] ?? .string("[binary file \(file["file_name"]?.templateText ?? "file"), \(file["size"]?.templateText ?? "0") bytes]")
            } else {
                let fields = node.declaredOutputs.isEmpty ? [inputFieldName(inputs["input_type"]?.stringValue)] : node.declaredOutputs
                for field in fields { outputs[field] = value }
            }
            outputs["complete"] = .bool(true)
            return .done(outputs)
        case "output":
            return .done(["value": inputs["value"] ?? .null, "complete": .bool(true)])
        case let type where textGenerators[type] != nil || type == "ai_operations":
            // ai_operations declares its outputs per operation: the text goes to the first one it declares.
            let field = textGenerators[type] ?? node.declaredOutputs.first ?? "response"
            var prompt = inputs["prompt"]?.templateText ?? ""
            switch type {
            case "summarizer": prompt = "Summarize: " + (inputs["text"]?.templateText ?? "")
            case "translator":
                prompt = "Translate to \(inputs["target_language"]?.templateText ?? "English"): " + (inputs["text"]?.templateText ?? "")
            case "ai_operations" where prompt.isEmpty:
                // Keys sorted: stored objects do not keep key order, and the text must not depend on it.
                prompt = inputs.entries.filter { $0.value.stringValue != nil }.sorted { $0.key < $1.key }
                    .map { "\($0.key): \($0.value.templateText)" }.joined(separator: "\n")
            default: break
            }
            let request = LLMRequest(
                provider: inputs["provider"]?.templateText ?? "openai",
                model: inputs["model"]?.templateText ?? "gpt-4o",
                system: inputs["system"]?.templateText ?? "",
                prompt: prompt,
                maxTokens: Int(inputs["max_tokens"]?.intValue ?? 128_000),
                seed: seed)
            var completion = LLMSimulator.complete(request)
            completion.responseField = field
            return .llm(completion)
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

    /// Text-generating AI node types the LLM simulator serves, with the output field that carries their text.
    static let textGenerators: [String: String] = [
        "llm": "response", "llm_open_ai_vision": "response", "llm_anthropic_vision": "response",
        "llm_google_vision": "response", "summarizer": "summary", "translator": "translation",
    ]

    /// The output field an input node fills for its `input_type` (API.md §7).
    static func inputFieldName(_ type: String?) -> String {
        switch type ?? "string" {
        case "string": "text"
        case "file": "processed_text"
        default: "value"
        }
    }

    /// Checks a run's inputs against the pipeline's input nodes (API.md §4.1, §7): every input node covered (or
    /// `use_default_value`), no input that names no input node, and `int32`/`float`/`bool` values of their type
    /// (numeric and boolean text accepted, as forms carry text). Throws `.badRequest` naming the inputs.
    static func checkInputs(_ graph: PipelineGraph, runInputs: JSONObject) throws(APIError) {
        let inputNodes = graph.nodes.filter { $0.type == "input" }
        let missing = inputNodes.filter { node in
            runInputs[node.name] == nil && runInputs[node.id] == nil && node.inputs["use_default_value"]?.boolValue != true
        }.map(\.name)
        if !missing.isEmpty {
            throw APIError(.badRequest, "Missing input(s): \(missing.sorted().joined(separator: ", "))")
        }
        let known = Set(inputNodes.flatMap { [$0.name, $0.id] })
        let unexpected = runInputs.keys.filter { !known.contains($0) }
        if !unexpected.isEmpty {
            throw APIError(.badRequest, "Unexpected input(s): \(unexpected.sorted().joined(separator: ", "))")
        }
        for node in inputNodes {
            guard let value = runInputs[node.name] ?? runInputs[node.id] else { continue }
            let type = node.inputs["input_type"]?.stringValue ?? "string"
            let fits: Bool = switch type {
            case "int32", "int64": value.intValue != nil
            case "float": value.doubleValue != nil
            case "bool": value.boolValue != nil || ["true", "false"].contains(value.stringValue?.lowercased() ?? "")
            default: true
            }
            if !fits { throw APIError(.badRequest, "Input '\(node.name)' must be of type \(type), got \(value.encodedString())") }
        }
    }

    /// The value an input node passes on: the run's value (typed for int32/float/bool), else its default.
    static func inputValue(_ node: GraphNode, _ inputs: JSONObject, runInputs: JSONObject) -> JSON {
        guard let value = runInputs[node.name] ?? runInputs[node.id] else { return inputs["default_value"] ?? .string("") }
        switch inputs["input_type"]?.stringValue ?? "string" {
        case "int32", "int64": return value.intValue.map(JSON.int) ?? value
        case "float": return value.doubleValue.map(JSON.double) ?? value
        case "bool": return value.boolValue.map(JSON.bool) ?? .bool(value.stringValue?.lowercased() == "true")
        default: return value
        }
    }
}
