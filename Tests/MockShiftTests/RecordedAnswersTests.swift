import Testing
@testable import MockShift

@Suite struct RecordedAnswersTests {
    @Test func anAnchoredPatternMatchesItsPromptAndNothingElse() throws {
        let prompts = ["plain", "a.b*c+d?e(f)g[h]i{j}k|l^m$n\\o", "two\nlines", "(?i)case", "{{ x.y }}", "", "émoji ✓"]
        for prompt in prompts {
            let pattern = try #require(PromptPattern(RecordedAnswers.anchoredPattern(prompt)), "\(prompt) compiles")
            #expect(pattern.matches(prompt), "\(prompt)")
            #expect(!pattern.matches(prompt + "x"), "\(prompt)")
            #expect(!pattern.matches("x" + prompt), "\(prompt)")
        }
        #expect(!(PromptPattern(RecordedAnswers.anchoredPattern("a.c"))!.matches("abc")))
        let long = String(repeating: "word ", count: 2000)
        #expect(PromptPattern(RecordedAnswers.anchoredPattern(long))!.matches(long), "a long prompt: its searched prefix")
    }

    /// input → text → llm_a (prompt from the text node) → llm_b (prompt from llm_a's answer) → two outputs.
    static func chain() -> ObservedRun {
        let nodes: JSONObject = [
            "q": ["id": "q", "type": "input", "name": "question", "inputs": ["input_type": "string"], "outputs": ["text"]],
            "t": ["id": "t", "type": "text", "name": "t", "inputs": ["text": "Topic: {{ q.text }}!"], "outputs": ["text"]],
            "a": ["id": "a", "type": "llm", "name": "a", "inputs": ["prompt": "{{ t.text }}", "stream": true], "outputs": ["response"]],
            "b": ["id": "b", "type": "llm", "name": "b", "inputs": ["prompt": "Shorten: {{a.response}}"], "outputs": ["response"]],
            "oa": ["id": "oa", "type": "output", "name": "first", "inputs": ["value": "{{ a.response }}", "output_type": "stream<string>"]],
            "ob": ["id": "ob", "type": "output", "name": "second", "inputs": ["value": " {{ b.response }} "]],
        ]
        var run = ObservedRun(pipelineName: "chain", nodes: nodes, inputs: ["question": "owls"])
        run.outputs = ["first": "Owls hunt.", "second": "Hunt."]
        run.startedAt = 1000
        run.tokens = ["first": [("Owls", 1300), (" hunt.", 1400)], "second": [("Hunt.", 1700)]]
        return run
    }

    @Test func promptsAreResolvedAsTheEngineWouldThroughEarlierAnswers() {
        let rules = RecordedAnswers.rules(for: Self.chain())
        #expect(rules.count == 2)
        #expect(rules[0]["node_id"] == "a" && rules[0]["prompt_pattern"] == "^Topic: owls!$" && rules[0]["response"] == "Owls hunt.")
        #expect(rules[1]["node_id"] == "b" && rules[1]["prompt_pattern"] == "^Shorten: Owls hunt\\.$" && rules[1]["response"] == "Hunt.")
        #expect(rules.allSatisfy { $0["pipeline_name"] == "chain" })
    }

    @Test func timingIsMeasuredFromTheNodesStart() {
        let rules = RecordedAnswers.rules(for: Self.chain())
        // a: started with the stream (1000), tokens at +300 and +400; the replay takes the offsets as they are
        // (a rule with offsets has no `ttft_ms` or `tokens_per_second`).
        #expect(rules[0]["token_offsets_ms"] == [300.0, 400.0])
        #expect(rules[0]["tokens"] == ["Owls", " hunt."])
        #expect(rules[0]["tokens_per_second"] == nil && rules[0]["ttft_ms"] == nil)
        // b waited for a's last token (1400): its one token came 300 ms later.
        #expect(rules[1]["token_offsets_ms"] == [300.0])
        #expect(rules[1]["ttft_ms"] == nil)
    }

    @Test func aNodeWhoseAnswerNoOutputShowsGivesNoRuleNorDoItsDependents() {
        var run = Self.chain()
        run.outputs = [:]
        run.tokens = [:]
        #expect(RecordedAnswers.rules(for: run).isEmpty)
        run.outputs = ["first": "Owls hunt."]
        #expect(RecordedAnswers.rules(for: run).map { $0["node_id"] } == ["a"])
    }

    @Test func sseEventsAreReadAcrossPiecesAndLineEndings() {
        var reader = SSEReader()
        #expect(reader.feed(Array("event: start\ndata: {\"type\":\"start\",\"run_id\":\"r\"}\n".utf8)).isEmpty)
        let first = reader.feed(Array("\n: keep-alive\n\nevent: stream\r\ndata: {\"output_value\":\"hi\"}\r\n\r\n".utf8))
        #expect(first.map(\.type) == ["start", "stream"])
        #expect(first[0].data?["run_id"] == "r" && first[1].data?["output_value"] == "hi")
    }
}
