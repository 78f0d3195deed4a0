import Testing
@testable import MockShift

@Suite struct LLMSimulatorTests {
    let base = LLMRequest(provider: "openai", model: "gpt-4o", system: "", prompt: "Tell me about robots.", maxTokens: 128_000, seed: 0)

    @Test func sameRequestGivesSameText() {
        #expect(LLMSimulator.complete(base) == LLMSimulator.complete(base))
    }

    @Test func eachPartOfTheRequestChangesTheText() {
        let text = LLMSimulator.complete(base).text
        var other = base; other.prompt = "Tell me about computers."
        #expect(LLMSimulator.complete(other).text != text)
        other = base; other.model = "gpt-4o-mini"
        #expect(LLMSimulator.complete(other).text != text)
        other = base; other.provider = "anthropic"
        #expect(LLMSimulator.complete(other).text != text)
        other = base; other.system = "Be brief."
        #expect(LLMSimulator.complete(other).text != text)
        other = base; other.seed = 1
        #expect(LLMSimulator.complete(other).text != text)
    }

    @Test(arguments: [5, 50, 500, 1000])
    func promptAskingForNWordsGetsNWithinTwentyPercent(n: Int) {
        var request = base
        request.prompt = "Write a \(n) word essay about the history of computing."
        let words = LLMSimulator.complete(request).text.split(separator: " ").count
        #expect(Double(words) >= Double(n) * 0.8 && Double(words) <= Double(n) * 1.2, "asked \(n) words, got \(words)")
    }

    @Test func withoutAWordCountAboutOneHundredTwentyWords() {
        let words = LLMSimulator.complete(base).tokens.count
        #expect((96...144).contains(words), "got \(words)")
    }

    @Test func maxTokensCapsTheOutput() {
        var request = base
        request.maxTokens = 7
        let completion = LLMSimulator.complete(request)
        #expect(completion.outputTokens == 7)
    }

    @Test func countsAndCreditsAreConsistent() {
        let c = LLMSimulator.complete(base)
        let outputs = c.outputs()
        #expect(outputs["output_tokens"] == .int(Int64(c.tokens.count)))
        #expect(outputs["input_tokens"] == .int(4))
        #expect(outputs["tokens_used"] == .int(Int64(4 + c.tokens.count)))
        #expect(outputs["credits_used"]?.doubleValue == c.creditsUsed)
        #expect(outputs["response"]?.stringValue == c.text)
        let partial = c.outputs(emitted: 3)
        #expect(partial["response"]?.stringValue == c.tokens.prefix(3).joined())
        #expect(partial["output_tokens"] == .int(3))
    }

    @Test func wordCountIsReadFromCommonPhrasings() {
        #expect(LLMSimulator.requestedWordCount(in: "Write a 500 word essay") == 500)
        #expect(LLMSimulator.requestedWordCount(in: "in 20 words please") == 20)
        #expect(LLMSimulator.requestedWordCount(in: "a 300-word summary") == 300)
        #expect(LLMSimulator.requestedWordCount(in: "no count here") == nil)
    }
}
