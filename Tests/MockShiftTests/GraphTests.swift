import Testing
@testable import MockShift

func node(_ id: String, _ type: String, _ inputs: JSONObject = [:], name: String? = nil, outputs: [String] = []) -> (String, JSON) {
    (id, .object(["id": .string(id), "name": .string(name ?? id), "type": .string(type), "inputs": .object(inputs),
                  "outputs": .array(outputs.map(JSON.string))]))
}

@Suite struct TemplateTests {
    @Test func referencesAreFoundInStringsListsAndObjectsWithOrWithoutSpaces() {
        let value: JSON = ["a": "{{ x.text }} and {{y.response}}", "b": ["{{z.value}}"], "c": ["d": "{{  w.out.deep  }}"]]
        let refs = Templates.references(in: value).map { "\($0.node).\($0.field)" }
        #expect(refs.sorted() == ["w.out.deep", "x.text", "y.response", "z.value"])
    }

    @Test func wholeTemplateKeepsTheValueTypeAndEmbeddedOneIsSplicedAsText() {
        let lookup: (Templates.Reference) -> JSON? = { ref in
            ref.node == "n" ? (ref.field == "count" ? .int(3) : .string("hi")) : nil
        }
        #expect(Templates.resolve("{{ n.count }}", lookup) == .int(3))
        #expect(Templates.resolve("say {{n.text}} {{ n.count }} times", lookup) == .string("say hi 3 times"))
        #expect(Templates.resolve(["k": ["{{n.text}}"]], lookup) == ["k": ["hi"]])
        #expect(Templates.resolve("{{ missing.x }}", lookup) == .string(""))
        #expect(Templates.resolve("no templates", lookup) == .string("no templates"))
    }
}

@Suite struct GraphTests {
    @Test func nodesAreOrderedAfterTheirDependencies() throws {
        let nodes = JSONObject([
            node("out", "output", ["value": "{{ llm.response }}"]),
            node("llm", "llm", ["prompt": "{{ in.text }}"]),
            node("in", "input"),
        ])
        let graph = try PipelineGraph(nodes: nodes)
        #expect(graph.nodes.map(\.id) == ["in", "llm", "out"])
        #expect(graph.nodes[2].dependencies == ["llm"])
    }

    @Test func referenceToMissingNodeIsRejectedNamingIt() {
        let nodes = JSONObject([node("out", "output", ["value": "{{ ghost.response }}"])])
        #expect(throws: APIError.self) { try PipelineGraph(nodes: nodes) }
        do { _ = try PipelineGraph(nodes: nodes) } catch {
            #expect(error.kind == .unprocessable)
            #expect(error.message.contains("ghost"), "message should name the missing node: \(error.message)")
        }
    }

    @Test func cycleIsRejectedNamingItsNodes() {
        let nodes = JSONObject([
            node("a", "text", ["text": "{{ b.text }}"]),
            node("b", "text", ["text": "{{ a.text }}"]),
            node("c", "input"),
        ])
        do {
            _ = try PipelineGraph(nodes: nodes)
            Issue.record("a cycle must be rejected")
        } catch {
            #expect(error.kind == .unprocessable)
            #expect(error.message.contains("a, b"), "got \(error.message)")
        }
    }

    @Test func selfReferenceIsACycle() {
        do {
            _ = try PipelineGraph(nodes: JSONObject([node("a", "text", ["text": "{{ a.text }}"])]))
            Issue.record("a self reference must be rejected")
        } catch {
            #expect(error.kind == .unprocessable)
        }
    }

    @Test func templatesMayNameNodesByName() throws {
        let nodes = JSONObject([
            node("input_0", "input", name: "question"),
            node("out", "output", ["value": "{{ question.text }}"]),
        ])
        let graph = try PipelineGraph(nodes: nodes)
        #expect(graph.nodes.last?.dependencies == ["input_0"])
    }

    @Test func overridesReplaceStoredInputsByIdOrName() throws {
        let nodes = JSONObject([node("llm_0", "llm", ["prompt": "stored", "model": "gpt-4o"], name: "writer")])
        let graph = try PipelineGraph(nodes: nodes, overrides: ["writer": ["prompt": "override"]])
        #expect(graph.nodes[0].inputs["prompt"] == .string("override"))
        #expect(graph.nodes[0].inputs["model"] == .string("gpt-4o"))
    }
}

/// The hand-written template and word-count scanners keep the regular expressions' meaning
/// (`\{\{\s*([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)\s*\}\}` and `(\d{1,6})[\s-]*words?\b`, case-insensitive).
@Suite struct ScannerTests {
    @Test func templatesNeedANodeADotAFieldAndBothClosingBraces() {
        let text: (String) -> [String] = { s in Templates.matches(in: s).map { "\($0.reference.node).\($0.reference.field)" } }
        #expect(text("{{a.b}}{{ c-d.e_f.g }}") == ["a.b", "c-d.e_f.g"])
        #expect(text("{{ a.b } {{a}} {{.b}} {{a.}} {{ a . b }} {a.b}") == [])
        #expect(text("{{{ a.b }}}") == ["a.b"])
        #expect(text("é {{\tn.x\n}} ü") == ["n.x"])
        let lookup: (Templates.Reference) -> JSON? = { $0.node == "n" ? .string("ü") : nil }
        #expect(Templates.resolve("é {{ n.x }}, {{ m.y }}!", lookup) == .string("é ü, !"))
        #expect(Templates.resolve("  {{ n.x }}\n", lookup) == .string("ü"))
    }

    @Test func wordCountsAreReadAsTheRegularExpressionDid() {
        #expect(LLMSimulator.requestedWordCount(in: "Write 50 words.") == 50)
        #expect(LLMSimulator.requestedWordCount(in: "a 12-word summary") == 12)
        #expect(LLMSimulator.requestedWordCount(in: "in 7 WORDS") == 7)
        // The whole number, capped (the regular expression read the last six digits: 234567; issue 11).
        #expect(LLMSimulator.requestedWordCount(in: "1234567 words") == LLMSimulator.mostRequestedWords)
        #expect(LLMSimulator.requestedWordCount(in: "3 wordsmiths, 4 words") == 4)
        #expect(LLMSimulator.requestedWordCount(in: "0 words") == nil)
        #expect(LLMSimulator.requestedWordCount(in: "no count here, words") == nil)
        #expect(LLMSimulator.requestedWordCount(in: "9 word") == 9)
    }
}
