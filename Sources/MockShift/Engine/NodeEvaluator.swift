/// What evaluating one node gives: outputs at once, or an LLM completion to emit over time.
enum NodeEvaluation {
    /// Outputs available now (field → value).
    case done(JSONObject)
    /// A simulated LLM call: the node's outputs appear when its last token is emitted.
    case llm(LLMCompletion)
    /// A timed node (`wait_node`): its outputs appear after `milliseconds` of simulated time.
    case wait(milliseconds: Double, outputs: JSONObject)
    /// The node cannot run: `--strict-nodes` and an unsupported type, or an input it cannot use (a number that is
    /// none, or out of range; issue 11). The run fails with this message, which names the node.
    case failed(String)
}

/// Evaluates single nodes (SPEC §6, API.md §7). Input, output, LLM and the basic nodes (``BasicNodes``) have
/// their real meaning; `wait_node` waits; every other type gets a deterministic placeholder for each output it
/// declares, or, with `strict`, cannot run.
enum NodeEvaluator {
    /// Evaluates `node` with its inputs already template-resolved. `runInputs` are the run's inputs keyed by
    /// input-node name; `chat` the conversation a chatbot turn hands over (for `chat_memory`), `files` its uploaded
    /// files (for `chat_file_reader`).
    static func evaluate(_ node: GraphNode, resolvedInputs inputs: JSONObject, runInputs: JSONObject, seed: UInt64,
                         strict: Bool = false, chat: ChatHistory? = nil, files: [ChatFile]? = nil) -> NodeEvaluation {
        do {
            return try evaluateChecked(node, resolvedInputs: inputs, runInputs: runInputs, seed: seed, strict: strict,
                                       chat: chat, files: files)
        } catch {
            return .failed("node \(node.id): \(error.message)")
        }
    }

    /// Longest `wait_node` wait, in simulated milliseconds (30 days): a longer one fails its run rather than
    /// parking a timer for decades.
    static let longestWaitMilliseconds: Double = 30 * 86_400_000

    private static func evaluateChecked(_ node: GraphNode, resolvedInputs inputs: JSONObject, runInputs: JSONObject, seed: UInt64,
                                        strict: Bool, chat: ChatHistory?, files: [ChatFile]?) throws(NodeInputError) -> NodeEvaluation {
        switch node.type {
        case "chat_memory":
            // SPEC §9: the conversation's earlier messages; a run outside a conversation has none.
            let window = try BasicNodes.wholeNumber(inputs["memory_window"], "memory_window")
            let history = chat ?? ChatHistory(messages: [], currentText: "")
            let memory = ChatMemory.memory(history, type: inputs["memory_type"]?.stringValue, window: window)
            return .done(["memory": .string(memory), "complete": .bool(true)])
        case "chat_file_reader":
            // SPEC §9 "Files": the conversation's files, one text each; a run outside a conversation has none.
            return .done(ChatFileReader.outputs(files))
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
                maxTokens: try maxTokens(inputs["max_tokens"]),
                seed: seed)
            var completion = LLMSimulator.complete(request)
            completion.responseField = field
            return .llm(completion)
        case "wait_node":
            let amount = try BasicNodes.number(inputs["wait_time"], "wait_time") ?? 1
            let unitName = inputs["wait_time_type"]?.stringValue ?? "seconds"
            let unit: Double = switch unitName {
            case "milliseconds": 1
            case "minutes": 60_000
            case "hours": 3_600_000
            default: 1000
            }
            let milliseconds = amount * unit
            guard milliseconds >= 0 else { throw NodeInputError("wait_time must not be negative, got \(amount) \(unitName)") }
            guard milliseconds <= longestWaitMilliseconds else {
                throw NodeInputError("wait_time \(amount) \(unitName) is longer than the longest wait, 30 days")
            }
            return .wait(milliseconds: milliseconds, outputs: ["status": "completed", "complete": .bool(true)])
        default:
            if var outputs = try BasicNodes.evaluate(type: node.type, inputs) {
                outputs["complete"] = .bool(true)
                return .done(outputs)
            }
            if strict { return .failed("node \(node.id): node type '\(node.type)' is not supported by MockShift (--strict-nodes)") }
            var outputs = JSONObject()
            for field in node.declaredOutputs {
                outputs[field] = .string("[mock \(node.type) \(node.id).\(field)]")
            }
            outputs["complete"] = .bool(true)
            return .done(outputs)
        }
    }

    /// An LLM node's `max_tokens`: 128,000 when absent; a count beyond `Int` clamps (it only caps the text); a
    /// negative, fractional or non-numeric value throws.
    static func maxTokens(_ value: JSON?) throws(NodeInputError) -> Int {
        guard let n = try BasicNodes.wholeNumber(value, "max_tokens") else { return 128_000 }
        guard n >= 0 else { throw NodeInputError("max_tokens must not be negative, got \(n)") }
        return n
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
    /// (numeric and boolean text accepted, as forms carry text; an int32 within its range, a float finite).
    /// Throws `.badRequest` naming the inputs.
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
            case "int32": value.intValue.flatMap { Int32(exactly: $0) } != nil
            case "int64": value.intValue != nil
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
