import Testing
@testable import MockShift

/// The completion keeps no token strings (issue 14 item 3): what it produces must stay byte-identical to the
/// token-by-token generation it replaced, and to `LLMScript.tokens(of:)` for scripted answers.
@Suite struct LLMCompletionStorageTests {
    /// The generation as it was before issue 14: every token built as a string, kept in an array.
    static func legacyTokens(_ request: LLMRequest) -> [String] {
        var rng = SeededGenerator(seed: LLMSimulator.seed(for: request))
        let target: Int
        if let asked = LLMSimulator.requestedWordCount(in: request.prompt) {
            let spread = max(0, asked / 10)
            target = max(1, asked - spread + Int(rng.next() % UInt64(2 * spread + 1)))
        } else {
            target = 110 + Int(rng.next() % 21)
        }
        let count = min(target, max(0, request.maxTokens))
        var tokens: [String] = []
        var sentenceLength = 0
        var sentenceTarget = 8 + Int(rng.next() % 9)
        for i in 0..<count {
            var word = LLMSimulator.vocabulary[Int(rng.next() % UInt64(LLMSimulator.vocabulary.count))]
            if sentenceLength == 0 { word = word.prefix(1).uppercased() + word.dropFirst() }
            sentenceLength += 1
            if sentenceLength >= sentenceTarget || i == count - 1 {
                word += "."
                sentenceLength = 0
                sentenceTarget = 8 + Int(rng.next() % 9)
            } else if rng.next() % 11 == 0 {
                word += ","
            }
            tokens.append(i == 0 ? word : " " + word)
        }
        return tokens
    }

    static var requests: [LLMRequest] {
        var all: [LLMRequest] = []
        let prompts = ["Tell me about robots.", "Write 1 word.", "Write a 2 word title", "Write 20 words.",
                       "Write a 2000 word essay number 7.", "a 300-word summary", "", "héllo wörld 🤖 55 words",
                       "Write 0 words.", "Write 17 words about nothing."]
        for (p, prompt) in prompts.enumerated() {
            for seed: UInt64 in [0, 1, 42, 0xDEAD_BEEF, UInt64.max] {
                for maxTokens in [128_000, 7, 1, 0] {
                    all.append(LLMRequest(provider: p % 2 == 0 ? "openai" : "anthropic", model: "m\(p)",
                                          system: seed % 2 == 0 ? "" : "Be brief.", prompt: prompt,
                                          maxTokens: maxTokens, seed: seed))
                }
            }
        }
        for n in stride(from: 1, through: 400, by: 13) {
            all.append(LLMRequest(provider: "openai", model: "gpt-4o", system: "", prompt: "Write \(n) words, run \(n).",
                                  maxTokens: 128_000, seed: UInt64(n)))
        }
        return all
    }

    @Test func simulatedTextIsByteIdenticalToTheTokenByTokenGeneration() {
        for request in Self.requests {
            let old = Self.legacyTokens(request)
            let new = LLMSimulator.complete(request)
            #expect(new.outputTokens == old.count, "\(request)")
            #expect(new.tokens == old, "\(request)")
            #expect(Array(new.text.utf8) == Array(old.joined().utf8), "\(request)")
            for k in [0, 1, 2, old.count / 2, old.count - 1, old.count, old.count + 5] {
                #expect(Array(new.prefix(k).utf8) == Array(old.prefix(max(0, k)).joined().utf8), "\(request) prefix \(k)")
            }
        }
    }

    @Test func aCursorGivesTheSameTokensInAnyChunking() {
        for request in Self.requests.prefix(60) {
            let old = Self.legacyTokens(request)
            let completion = LLMSimulator.complete(request)
            for chunk in [1, 3, 50] {
                var cursor = LLMCompletion.TokenCursor()
                var got: [String] = []
                while cursor.position < completion.outputTokens {
                    got += completion.next(chunk, from: &cursor)
                }
                #expect(got == old, "\(request) in chunks of \(chunk)")
                #expect(completion.next(chunk, from: &cursor).isEmpty)
            }
        }
    }

    static let scriptedTexts = [
        "", " ", "  ", "one", "one two", " leading", "  two leading", "trailing ", "double  space", "a   b    c ",
        "Hello, \"there\".", "naïve café — déjà vu", "emoji 🤖 robots 👩‍👩‍👧 family", "tab\tseparated words\nnew line",
        "combining e\u{301} and space\u{301} marks", " \u{301}x y", "日本語 の テキスト", "x",
    ]

    @Test func scriptedTextIsCutExactlyAsLLMScriptCutsIt() {
        for text in Self.scriptedTexts {
            let old = LLMScript.tokens(of: text)
            let completion = LLMCompletion(text: text, inputTokens: 3)
            #expect(completion.outputTokens == old.count, "\(text.debugDescription)")
            #expect(completion.tokens == old, "\(text.debugDescription)")
            #expect(Array(completion.text.utf8) == Array(text.utf8))
            for k in 0...old.count {
                #expect(Array(completion.prefix(k).utf8) == Array(old.prefix(k).joined().utf8), "\(text.debugDescription) \(k)")
                var cursor = LLMCompletion.TokenCursor()
                let first = completion.next(k, from: &cursor)
                let rest = completion.next(old.count, from: &cursor)
                #expect(first + rest == old, "\(text.debugDescription) split at \(k)")
            }
        }
    }

    @Test func aScriptedAnswerReplacesTheSimulatedOneKeepingTheInputCount() {
        var completion = LLMSimulator.complete(LLMRequest(provider: "openai", model: "gpt-4o", system: "",
                                                          prompt: "Write 2000 words.", maxTokens: 128_000, seed: 0))
        let input = completion.inputTokens
        completion.setText("Just  this, please.")
        #expect(completion.tokens == LLMScript.tokens(of: "Just  this, please."))
        #expect(completion.outputTokens == 3)
        #expect(completion.inputTokens == input)
        #expect(completion.outputs()["response"]?.stringValue == "Just  this, please.")
    }
}
