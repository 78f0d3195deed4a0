import Crypto
import Foundation

/// What an LLM node asks for (API.md §7 `llm` inputs, after template resolution).
public struct LLMRequest: Sendable, Equatable {
    public var provider: String
    public var model: String
    public var system: String
    public var prompt: String
    /// Most tokens to produce (the node's `max_tokens`).
    public var maxTokens: Int
    /// `serve --seed`: varies every simulated text.
    public var seed: UInt64

    public init(provider: String, model: String, system: String, prompt: String, maxTokens: Int, seed: UInt64) {
        self.provider = provider
        self.model = model
        self.system = system
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.seed = seed
    }
}

/// A simulated completion: the tokens in emission order and the figures the node outputs (SPEC §6).
public struct LLMCompletion: Sendable, Equatable {
    /// Tokens in order; their concatenation is `text`. One token per word, with its leading space.
    public var tokens: [String]
    public var inputTokens: Int
    /// The output field that carries the text: `response` for LLM nodes, `summary` for a summarizer, ...
    public var responseField = "response"
    public var outputTokens: Int { tokens.count }
    public var tokensUsed: Int { inputTokens + outputTokens }
    /// Credits at a fixed simulated price: 2.5 per million input tokens, 10 per million output tokens.
    public var creditsUsed: Double { (Double(inputTokens) * 2.5 + Double(outputTokens) * 10) / 1_000_000 }

    public var text: String { tokens.joined() }

    /// The text of the first `count` tokens (what a terminated run had produced).
    public func prefix(_ count: Int) -> String { tokens.prefix(max(0, count)).joined() }

    /// The node's outputs as the run exposes them (`response`, token counts, `credits_used`).
    public func outputs(emitted: Int? = nil) -> JSONObject {
        let n = min(emitted ?? tokens.count, tokens.count)
        return [
            responseField: .string(prefix(n)),
            "input_tokens": .int(Int64(inputTokens)),
            "output_tokens": .int(Int64(n)),
            "tokens_used": .int(Int64(inputTokens + n)),
            "credits_used": .double((Double(inputTokens) * 2.5 + Double(n) * 10) / 1_000_000),
        ]
    }
}

/// Deterministic LLM text (SPEC §6): the same provider, model, system, prompt and seed always give the same
/// words, across runs and restarts. The words come from a built-in vocabulary, chosen by a generator seeded
/// with the SHA-256 of the request. A prompt asking for "N words" gets N words ± 10 % (N read up to
/// ``mostRequestedWords``: a longer ask gets that many); otherwise about 120 words; never more tokens than
/// `maxTokens`.
public enum LLMSimulator {
    /// Simulates `request`.
    public static func complete(_ request: LLMRequest) -> LLMCompletion {
        var rng = SeededGenerator(seed: seed(for: request))
        let target: Int
        if let asked = requestedWordCount(in: request.prompt) {
            let spread = max(0, asked / 10)
            target = max(1, asked - spread + Int(rng.next() % UInt64(2 * spread + 1)))
        } else {
            target = 110 + Int(rng.next() % 21)
        }
        let count = min(target, max(0, request.maxTokens))
        var tokens: [String] = []
        tokens.reserveCapacity(count)
        var sentenceLength = 0
        var sentenceTarget = 8 + Int(rng.next() % 9)
        for i in 0..<count {
            var word = vocabulary[Int(rng.next() % UInt64(vocabulary.count))]
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
        return LLMCompletion(tokens: tokens, inputTokens: max(1, wordCount(request.system) + wordCount(request.prompt)))
    }

    /// The largest N of "N words" the simulator takes; a larger N (`"99999999999999999999 words"`) reads as this.
    public static let mostRequestedWords = 1_000_000

    /// The N of "N words" (or "N-word") in a prompt, if present; at most ``mostRequestedWords``.
    public static func requestedWordCount(in prompt: String) -> Int? {
        // "N words", "N-word", "N word" (case-insensitive): the first such phrase counts, N being the whole run of
        // digits (of any length: more than 7 digits reads as the cap, never parsed into an Int).
        // Scanned by hand over the Unicode scalars (Swift Regex cost more than the rest of a run).
        let scalars = Array(prompt.unicodeScalars)
        func isDigit(_ i: Int) -> Bool { i < scalars.count && scalars[i].value >= 48 && scalars[i].value <= 57 }
        func isWordChar(_ i: Int) -> Bool {
            guard i < scalars.count else { return false }
            let p = scalars[i].properties
            return p.isAlphabetic || p.numericType != nil || scalars[i] == "_"
        }
        func lower(_ i: Int) -> Unicode.Scalar? {
            guard i < scalars.count, scalars[i].isASCII else { return nil }
            let v = scalars[i].value
            return Unicode.Scalar(v >= 65 && v <= 90 ? v + 32 : v)
        }
        var start = 0
        while start < scalars.count {
            guard isDigit(start) else { start += 1; continue }
            var end = start
            while isDigit(end) { end += 1 }
            var j = end
            while j < scalars.count, scalars[j].properties.isWhitespace || scalars[j] == "-" { j += 1 }
            if lower(j) == "w", lower(j + 1) == "o", lower(j + 2) == "r", lower(j + 3) == "d" {
                // "words" then a word boundary, or else "word" then a word boundary.
                let matched = (lower(j + 4) == "s" && !isWordChar(j + 5)) || !isWordChar(j + 4)
                if matched {
                    let digits = String(String.UnicodeScalarView(scalars[start..<end])).drop { $0 == "0" }
                    if digits.isEmpty { return nil }
                    return digits.count > 7 ? mostRequestedWords : min(Int(digits) ?? mostRequestedWords, mostRequestedWords)
                }
            }
            start = end  // the whole run of digits was the number
        }
        return nil
    }

    static func wordCount(_ s: String) -> Int {
        s.split(whereSeparator: { $0.isWhitespace }).count
    }

    static func seed(for request: LLMRequest) -> UInt64 {
        var hasher = SHA256()
        for part in [request.provider, request.model, request.system, request.prompt, String(request.seed)] {
            hasher.update(data: Array(part.utf8))
            hasher.update(data: [0])
        }
        return hasher.finalize().prefix(8).reduce(0) { ($0 << 8) | UInt64($1) }
    }

    static let vocabulary: [String] = """
        the a of and to in is that for on with as by from at this an be are was it which or its their
        computing machine history early modern system systems data model models network networks language
        signal signals process processes engine engines design designs memory storage logic circuit circuits
        program programs software hardware research researchers engineers people teams project projects
        idea ideas theory practice method methods result results question questions answer answers
        simple complex careful rapid steady gradual important useful practical general specific new old
        first second later earlier next final many several few most each every other such same different
        built designed tested measured improved changed shaped enabled allowed required produced described
        explored studied proved showed found made used ran stored sent received counted computed solved
        robot robots sensor sensors control motion arm arms vision planning task tasks factory factories
        number numbers table tables card cards tape tapes tube tubes chip chips transistor transistors
        across through between during after before within without toward around over under
        clear strong small large fast slow quiet bright open shared public private local global
        """.split(whereSeparator: { $0.isWhitespace }).map(String.init)
}

/// SplitMix64: a tiny deterministic generator, so the simulated text never depends on the platform's RNG.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
