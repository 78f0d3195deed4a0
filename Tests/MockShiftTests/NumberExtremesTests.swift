import Foundation
import Logging
import Testing
@testable import MockShift

/// Extreme numbers through every node type that reads a number and every API field that takes one (issue 11,
/// item 1: one `"1e19"` in a `convert_type` node killed the daemon with SIGILL). Each value must give a clean
/// value, a run that fails naming its node, or a 400 naming the field; never a trap (which would end this test
/// process: a crash is a failure too).
@Suite(.serialized) struct NumberExtremesTests {
    static let digits400 = String(repeating: "9", count: 400)

    /// The extremes, as JSON numbers where JSON can hold them and as text (forms and templates carry text).
    static let extremes: [JSON] = [
        .int(0), .double(-0.0), "0", "-0", "+0", "-0.0",
        .double(1e308), .double(-1e308), "1e308", "-1e308", "1e300", "1e19", "-1e19",
        "nan", "NaN", "inf", "-inf", "infinity", .double(.nan), .double(.infinity), .double(-.infinity),
        .int(Int64.max), .int(Int64.min), "9223372036854775807", "-9223372036854775808",
        "9223372036854775808", "-9223372036854775809", "18446744073709551615", .double(18_446_744_073_709_551_616.0),
        .string(digits400), .string("-" + digits400), .string("0." + digits400), "1e-400",
        "0x10", "", "  12 ", "12.5", .double(2.5), "abc", .bool(true), .null, ["1"],
    ]

    // MARK: Node types

    /// Every node type that reads a number, with `v` where the number goes (inputs already template-resolved).
    static func numberReadingNodes(_ v: JSON) -> [(type: String, inputs: JSONObject)] {
        var nodes: [(String, JSONObject)] = []
        for target in ["int32", "int64", "int", "float", "bool", "timestamp", "string"] {
            nodes.append(("convert_type", ["value": v, "target_type": .string(target), "source_type": "string"]))
        }
        nodes.append(("get_list_item", ["list": ["a", "b", "c"], "index": v]))
        nodes.append(("text_formatter", ["text": "one two three", "formatter": "Truncate", "max_num_token": v]))
        for unit in ["seconds", "minutes", "hours", "days", "weeks"] {
            nodes.append(("time", ["use_delta": true, "delta_value": v, "delta_time_unit": .string(unit), "output_format": "YYYY-MM-DD"]))
        }
        for unit in ["milliseconds", "seconds", "minutes", "hours"] {
            nodes.append(("wait_node", ["wait_time": v, "wait_time_type": .string(unit)]))
        }
        nodes.append(("llm", ["prompt": "Say hello.", "max_tokens": v]))
        nodes.append(("llm", ["prompt": .string("Write \(v.templateText) words about robots.")]))
        for op in ["Equal", "NotEqual", "GreaterThan", "LessThan", "GreaterThanEqual", "LessThanEqual",
                   "TextGreaterThanNCharacters", "TextLessThanNCharacters"] {
            let term: JSON = ["operand1": v, "operator": .string(op), "operand2": "5", "termType": "Clause"]
            let swapped: JSON = ["operand1": "5", "operator": .string(op), "operand2": v, "termType": "Clause"]
            nodes.append(("condition", ["conditions": [["terms": [term, swapped], "operators": ["OR"]]],
                                        "outputs": ["path_0": "path", "path_else": "path"]]))
        }
        return nodes
    }

    @Test(arguments: extremes)
    func everyNodeThatReadsANumberGivesAValueOrFailsNamingTheNode(value: JSON) {
        for (type, inputs) in Self.numberReadingNodes(value) {
            let node = GraphNode(id: "n", name: "n", type: type, inputs: inputs, declaredOutputs: [], dependencies: [])
            let what = "\(type) \(inputs.entries.map { "\($0.key)=\($0.value.encodedString().prefix(40))" }.joined(separator: " "))"
            switch NodeEvaluator.evaluate(node, resolvedInputs: inputs, runInputs: [:], seed: 0) {
            case let .failed(message):
                #expect(message.hasPrefix("node n: "), "\(what): \(message)")
                #expect(message.count < 400, "\(what): the message stays short: \(message)")
            case let .done(outputs):
                for (_, output) in outputs { Self.expectSane(output, what) }
                if type == "convert_type", case let .int(n)? = outputs["converted_value"], inputs["target_type"] == "int32" {
                    #expect(Int32(exactly: n) != nil, "\(what): \(n) does not fit int32")
                }
            case let .wait(milliseconds, _):
                #expect(milliseconds.isFinite && milliseconds >= 0 && milliseconds <= NodeEvaluator.longestWaitMilliseconds, "\(what): \(milliseconds)")
            case let .llm(completion):
                #expect(completion.tokens.count <= 1_100_000, "\(what): \(completion.tokens.count) tokens")
            }
        }
    }

    /// No NaN or infinity in an output: they cannot be written as JSON.
    static func expectSane(_ value: JSON, _ what: String) {
        switch value {
        case let .double(d): #expect(d.isFinite, "\(what): output \(d)")
        case let .array(items): for item in items { expectSane(item, what) }
        case let .object(o): for (_, item) in o { expectSane(item, what) }
        default: break
        }
    }

    @Test func convertTypeKeepsWhatFitsAndRefusesWhatDoesNot() throws {
        #expect(try BasicNodes.convert("  12 ", to: "int32") == .int(12))
        #expect(try BasicNodes.convert("-0", to: "int32") == .int(0))
        #expect(try BasicNodes.convert(.double(-0.0), to: "int32") == .int(0))
        #expect(try BasicNodes.convert("2.9", to: "int32") == .int(2))
        #expect(try BasicNodes.convert("2147483647", to: "int32") == .int(2_147_483_647))
        #expect(try BasicNodes.convert("9223372036854775807", to: "int64") == .int(Int64.max))
        #expect(try BasicNodes.convert("", to: "int32") == .null)
        #expect(throws: NodeInputError("value 1e19 does not fit int32")) { try BasicNodes.convert("1e19", to: "int32") }
        #expect(throws: NodeInputError("value 2147483648 does not fit int32")) { try BasicNodes.convert("2147483648", to: "int32") }
        #expect(throws: NodeInputError("value 9223372036854775808 does not fit int64")) {
            try BasicNodes.convert("9223372036854775808", to: "int64")
        }
        // Near Int64's ends, through a Double these would round to Int64.min/max and pass (found by review).
        for text in ["-9223372036854775809", "-9223372036854776000", "-9223372036854775900.7", "9223372036854775807.5e0"] {
            #expect(throws: NodeInputError("value \(text) does not fit int64")) { try BasicNodes.convert(.string(text), to: "int64") }
        }
        #expect(try BasicNodes.convert("-9223372036854775808", to: "int64") == .int(Int64.min))
        #expect(try BasicNodes.convert("9007199254740993.5", to: "int64") == .int(9_007_199_254_740_993), "fractions cut, digits exact")
        #expect(try BasicNodes.convert("-.5", to: "int64") == .int(0))
        #expect(try BasicNodes.convert("1.5e3", to: "int64") == .int(1500))
        #expect(try BasicNodes.convert(.bool(true), to: "int32") == .int(1))
        #expect(JSON.double(-0x1p63).intValue == nil, "a JSON integer below Int64.min arrives as this Double")
        #expect(throws: NodeInputError("cannot convert \"nan\" to int32: not a decimal number")) { try BasicNodes.convert("nan", to: "int32") }
        #expect(throws: NodeInputError("cannot convert \"0x10\" to float: not a decimal number")) { try BasicNodes.convert("0x10", to: "float") }
        #expect(throws: NodeInputError("value 1e400 does not fit float")) { try BasicNodes.convert("1e400", to: "float") }
    }

    // MARK: Runs through the engine

    /// input (string, fed the extreme) → node reading it through a template → output, for every node type.
    @Test(arguments: extremes)
    func runsOfEveryNumberReadingNodeEndCleanly(value: JSON) throws {
        let store = try Store(path: ":memory:")
        let scheduler = Scheduler(clock: .manual)
        let engine = RunEngine(store: store, scheduler: scheduler, settings: EngineSettings(), logger: Logger(label: "numbers"))
        for (i, (type, inputs)) in Self.numberReadingNodes(value).enumerated() {
            var templated = inputs
            for (key, v) in inputs where v == value && key != "target_type" { templated[key] = "{{ in.text }}" }
            let nodes = JSONObject([
                node("in", "input", ["input_type": "string"], name: "in", outputs: ["text"]),
                node("n", type, templated, outputs: ["converted_value", "output", "processed_time", "status", "response", "path_0"]),
                node("out", "output", ["value": "{{ n.complete }}"], name: "out"),
            ])
            let what = "\(type) \(templated.entries.map { "\($0.key)=\($0.value.encodedString().prefix(40))" }.joined(separator: " "))"
            let started = try engine.start(namespace: "default", pipelineID: "p\(i)", nodes: nodes, version: nil,
                                           inputs: ["in": value], mode: .background)
            scheduler.advance(byNanoseconds: 31 * 86_400_000 * 1_000_000)  // past the longest wait
            var run = try engine.status(namespace: "default", pipelineID: "p\(i)", runID: started.id)
            if run.status == .inProgress {  // an LLM asked for a million words is still talking: stop it
                run = try engine.terminate(namespace: "default", pipelineID: "p\(i)", runID: started.id)
            }
            #expect(run.status == .completed || run.status == .failed || run.status == .terminated, "\(what): \(run.status)")
            if run.status == .failed { #expect(run.error?.hasPrefix("node n: ") == true, "\(what): \(run.error ?? "")") }
        }
    }

    @Test func tokenCountsNeverTrapOnExtremeTimings() {
        for (ttft, rate, scale) in [(0.0, 1_000_000.0, 1e-300), (86_400_000.0, 0.001, 1_000_000.0), (1e300, 40.0, 1.0), (0.0, 0.001, 1e-9)] {
            var settings = EngineSettings()
            settings.ttftMilliseconds = ttft
            settings.tokensPerSecond = rate
            settings.timeScale = scale
            for elapsed in [0, 1, 1_000_000_000, UInt64(Int64.max), UInt64.max] {
                let n = settings.emitted(after: elapsed, of: 1000)
                #expect((0...1000).contains(n), "ttft \(ttft) rate \(rate) scale \(scale) elapsed \(elapsed): \(n)")
            }
            _ = settings.due(token: Int.max)
        }
        let scheduler = Scheduler(clock: .manual)
        scheduler.advance(byNanoseconds: UInt64.max - 5)
        scheduler.advance(byNanoseconds: UInt64.max)  // saturates instead of wrapping back to the start
        #expect(scheduler.now == UInt64.max)
    }

    @Test func promptsAskingForHugeWordCountsReadAsTheCap() {
        #expect(LLMSimulator.requestedWordCount(in: "Write 99999999999999999999 words") == LLMSimulator.mostRequestedWords)
        #expect(LLMSimulator.requestedWordCount(in: "Write \(Self.digits400) words") == LLMSimulator.mostRequestedWords)
        #expect(LLMSimulator.requestedWordCount(in: "Write 1e30 words") == 30)
        #expect(LLMSimulator.requestedWordCount(in: "Write 10000000000 words") == LLMSimulator.mostRequestedWords)
        #expect(LLMSimulator.requestedWordCount(in: "Write 0 words") == nil)
    }

    // MARK: API fields

    static func encoded(_ value: JSON) -> String {
        (value.stringValue ?? value.encodedString()).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    /// A 400 must name the field; anything else must be a 200.
    static func expectCleanAnswer(_ answer: RawAnswer?, field: String, _ what: String) {
        guard let answer else { Issue.record("\(what): no answer"); return }
        if answer.status == 400 {
            let error = (try? JSON.parse(answer.body))?["error"]?.stringValue ?? ""
            #expect(error.contains(field), "\(what): 400 without naming \(field): \(answer.text.prefix(300))")
        } else {
            #expect(answer.status == 200, "\(what): \(answer.status) \(answer.text.prefix(300))")
        }
    }

    @Test func everyNumericAPIFieldAnswersAValueOrA400NamingIt() async throws {
        try await HostileInputTests.offThePool {
            let daemon = try LiveDaemon()
            let key = "numbers"
            var pipelines: [String: String] = [:]
            for type in ["int32", "int64", "float"] {
                let doc: JSON = ["name": .string("typed_\(type)"), "nodes": [
                    "n": ["type": "input", "name": "n", "inputs": ["input_type": .string(type)], "outputs": ["value"]],
                    "out": ["type": "output", "name": "out", "inputs": ["value": "{{ n.value }}"]],
                ]]
                let created = daemon.call("POST", "/v1/pipeline", key: key, json: doc)
                pipelines[type] = try created.flatMap { try JSON.parse($0.body)["id"]?.stringValue } ?? ""
            }
            for value in Self.extremes {
                let shown = value.encodedString().prefix(40)
                for field in ["status", "delay_ms", "llm_fail_after_tokens", "times", "probability"] {
                    var rule: JSONObject = ["path": "/v1/nothing/here", "drop": true]
                    rule[field] = value
                    Self.expectCleanAnswer(daemon.call("POST", "/_mock/faults", key: key, json: .object(rule)), field: field, "fault \(field)=\(shown)")
                }
                for field in ["ttft_ms", "tokens_per_second", "fail_after_tokens"] {
                    var rule: JSONObject = ["pipeline_name": "nothing", "response": "x"]
                    rule[field] = value
                    Self.expectCleanAnswer(daemon.call("POST", "/_mock/llm", key: key, json: .object(rule)), field: field, "llm \(field)=\(shown)")
                }
                Self.expectCleanAnswer(daemon.call("POST", "/_mock/clock/advance", key: key, json: ["ms": value]), field: "ms", "advance \(shown)")
                for type in ["int32", "int64", "float"] {
                    let answer = daemon.call("POST", "/v1/pipeline/\(pipelines[type] ?? "")/run", key: key, json: ["inputs": ["n": value]])
                    Self.expectCleanAnswer(answer, field: "'n'", "\(type) input \(shown)")
                    if answer?.status == 200, type == "int32", case let .int(n)? = (try? JSON.parse(answer?.body ?? []))?["outputs"]?["out"] {
                        #expect(Int32(exactly: n) != nil, "int32 input \(shown) came out as \(n)")
                    }
                }
                let q = Self.encoded(value)
                for target in ["/v1/pipelines?limit=\(q)", "/v1/pipelines?offset=\(q)", "/_mock/runs?limit=\(q)", "/_mock/requests?limit=\(q)"] {
                    let field = target.contains("offset") ? "offset" : "limit"
                    Self.expectCleanAnswer(daemon.call("GET", target, key: key), field: field, "GET \(target.prefix(60))")
                }
                _ = daemon.call("DELETE", "/_mock/faults", key: key)
                _ = daemon.call("DELETE", "/_mock/llm", key: key)
            }
            #expect(daemon.call("GET", "/_mock/health", key: key)?.status == 200)
        }
    }

    @Test(arguments: extremes)
    func fixtureNumbersLoadOrNameFileAndField(value: JSON) throws {
        let store = try Store(path: ":memory:")
        let engine = RunEngine(store: store, scheduler: Scheduler(clock: .manual), settings: EngineSettings(), logger: Logger(label: "numbers"))
        let app = MockShiftApp(store: store, engine: engine, apiKeys: [], maxBodyBytes: 1 << 20, logger: Logger(label: "numbers"))
        for (key, field, base) in [("faults", "delay_ms", ["path": "/v1/x", "drop": true] as JSONObject),
                                   ("faults", "times", ["path": "/v1/x", "drop": true]),
                                   ("llm", "tokens_per_second", ["response": "x"])] {
            var entry = base
            entry[field] = value
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("numbers-\(IDs.make())")
            defer { try? FileManager.default.removeItem(at: folder) }
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(JSON.object([key: .array([.object(entry)])]).encoded())
                .write(to: folder.appendingPathComponent("f.json"))
            do {
                _ = try Fixtures.load(directory: folder.path, into: app)
            } catch let error as Fixtures.LoadError {
                #expect(error.field == "\(key)[0]" && error.message.contains(field), "\(error)")
            }
        }
    }
}
