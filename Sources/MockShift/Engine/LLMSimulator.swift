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

/// A simulated completion: its tokens in emission order and the figures the node outputs (SPEC §6).
///
/// The tokens are not held as strings: a simulated answer keeps only the generator's state at its first token
/// (a few words of memory, whatever its length) and produces its text again when someone needs it; a scripted
/// answer keeps its text as one string plus where each token ends. A live run at 2,000 words thus holds tens of
/// bytes for its text instead of thousands of strings (issue 14 item 3). The text is byte-identical to what the
/// token-by-token generation gave (`LLMSimulatorTests`).
public struct LLMCompletion: Sendable, Equatable {
    /// Where the tokens come from.
    enum Source: Sendable, Equatable {
        /// The simulator's words, from the generator positioned before the first token.
        case simulated(SimulatedTokens)
        /// A given text (a scripted answer); `ends[i]` is the UTF-8 offset where token `i` ends.
        case text(String, ends: [UInt32])
    }

    var source: Source
    public var inputTokens: Int
    /// The output field that carries the text: `response` for LLM nodes, `summary` for a summarizer, ...
    public var responseField = "response"
    /// How many tokens (one per word, each after the first with its leading space).
    public private(set) var outputTokens: Int
    public var tokensUsed: Int { inputTokens + outputTokens }
    /// Credits at a fixed simulated price: 2.5 per million input tokens, 10 per million output tokens.
    public var creditsUsed: Double { credits(emitted: outputTokens) }

    init(source: Source, count: Int, inputTokens: Int) {
        self.source = source
        self.outputTokens = count
        self.inputTokens = inputTokens
    }

    /// A completion whose answer is `text`, cut into tokens as ``LLMScript/tokens(of:)`` cuts it.
    public init(text: String, inputTokens: Int) {
        let ends = LLMCompletion.tokenEnds(of: text)
        self.init(source: .text(text, ends: ends), count: ends.count, inputTokens: inputTokens)
    }

    /// Replaces the answer's text (a scripted answer), keeping the input figures.
    public mutating func setText(_ text: String) {
        let ends = LLMCompletion.tokenEnds(of: text)
        source = .text(text, ends: ends)
        outputTokens = ends.count
    }

    /// Replaces the answer's text with `text` cut where `ends` says (UTF-8 offsets, increasing, the last at most
    /// the text's length; a recorded answer's own token boundaries, ``LLMScript/setTokens(_:)``), keeping the input
    /// figures.
    public mutating func setText(_ text: String, ends: [UInt32]) {
        source = .text(text, ends: ends)
        outputTokens = ends.count
    }

    /// The whole text: every token, concatenated.
    public var text: String { prefix(outputTokens) }

    /// The text of the first `count` tokens (what a terminated run had produced).
    public func prefix(_ count: Int) -> String {
        let n = min(max(0, count), outputTokens)
        switch source {
        case let .text(text, ends):
            guard n > 0 else { return "" }
            let utf8 = text.utf8
            return String(text[..<utf8.index(utf8.startIndex, offsetBy: Int(ends[n - 1]))])
        case var .simulated(generator):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(n * 8)
            for _ in 0..<n { generator.appendNext(to: &bytes) }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Every token as a string (materialised on each call: for tests and short answers, not for live runs).
    public var tokens: [String] {
        var cursor = TokenCursor()
        return next(outputTokens, from: &cursor)
    }

    /// A reading position in the tokens, for someone who takes them in order (a streamed node): it moves on
    /// from where it stopped, so sending a whole answer token by token costs one pass over it.
    public struct TokenCursor: Sendable {
        /// Tokens taken so far.
        public internal(set) var position = 0
        var generator: SimulatedTokens?
        /// A cursor before the first token.
        public init() {}
    }

    /// The next `count` tokens after `cursor` (fewer at the end), moving it past them.
    public func next(_ count: Int, from cursor: inout TokenCursor) -> [String] {
        let end = min(outputTokens, cursor.position + max(0, count))
        guard end > cursor.position else { return [] }
        var tokens: [String] = []
        tokens.reserveCapacity(end - cursor.position)
        switch source {
        case let .text(text, ends):
            let utf8 = text.utf8
            var from = cursor.position == 0 ? 0 : Int(ends[cursor.position - 1])
            for i in cursor.position..<end {
                let to = Int(ends[i])
                tokens.append(String(text[utf8.index(utf8.startIndex, offsetBy: from)..<utf8.index(utf8.startIndex, offsetBy: to)]))
                from = to
            }
        case let .simulated(start):
            var generator = cursor.generator ?? start
            var bytes: [UInt8] = []
            while generator.index < cursor.position { bytes.removeAll(keepingCapacity: true); generator.appendNext(to: &bytes) }
            for _ in cursor.position..<end {
                bytes.removeAll(keepingCapacity: true)
                generator.appendNext(to: &bytes)
                tokens.append(String(decoding: bytes, as: UTF8.self))
            }
            cursor.generator = generator
        }
        cursor.position = end
        return tokens
    }

    /// Credits for `emitted` output tokens and the input (the price of ``creditsUsed``).
    public func credits(emitted: Int) -> Double {
        (Double(inputTokens) * 2.5 + Double(emitted) * 10) / 1_000_000
    }

    /// The node's outputs as the run exposes them (`response`, token counts, `credits_used`).
    public func outputs(emitted: Int? = nil) -> JSONObject {
        let n = min(emitted ?? outputTokens, outputTokens)
        return [
            responseField: .string(prefix(n)),
            "input_tokens": .int(Int64(inputTokens)),
            "output_tokens": .int(Int64(n)),
            "tokens_used": .int(Int64(inputTokens + n)),
            "credits_used": .double(credits(emitted: n)),
        ]
    }

    /// Where each token of `text` ends (UTF-8 offsets), cut as ``LLMScript/tokens(of:)`` cuts: a new token
    /// starts at each space that follows a token other than a lone space.
    static func tokenEnds(of text: String) -> [UInt32] {
        var ends: [UInt32] = []
        var offset = 0
        var currentBytes = 0
        var currentIsSpace = false
        for ch in text {
            if ch == " " && currentBytes > 0 && !currentIsSpace {
                ends.append(UInt32(offset))
                currentBytes = 0
            }
            currentIsSpace = currentBytes == 0 && ch == " "
            let size = ch.utf8.count
            currentBytes += size
            offset += size
        }
        if currentBytes > 0 { ends.append(UInt32(offset)) }
        return ends
    }
}

/// The simulator's word generator at some token: what it needs to produce the rest of an answer, word by word
/// (the random draws, the sentence being built, the answer's length, which ends on a full stop).
struct SimulatedTokens: Sendable, Equatable {
    var rng: SeededGenerator
    /// The token the next call produces.
    private(set) var index = 0
    /// The answer's length in tokens.
    let count: Int
    var sentenceLength = 0
    var sentenceTarget: Int

    init(rng: SeededGenerator, count: Int) {
        self.rng = rng
        self.count = count
        sentenceTarget = 8 + Int(self.rng.next() % 9)
    }

    /// Appends the next token's UTF-8 bytes (its leading space, its word, a comma or full stop) to `bytes`.
    mutating func appendNext(to bytes: inout [UInt8]) {
        let word = LLMSimulator.vocabularyBytes[Int(rng.next() % UInt64(LLMSimulator.vocabularyBytes.count))]
        if index > 0 { bytes.append(0x20) }
        if sentenceLength == 0, let first = word.first, first >= 0x61, first <= 0x7A {
            // Every vocabulary word is lower-case ASCII: capitalising is one byte.
            bytes.append(first - 0x20)
            bytes.append(contentsOf: word.dropFirst())
        } else {
            bytes.append(contentsOf: word)
        }
        sentenceLength += 1
        if sentenceLength >= sentenceTarget || index == count - 1 {
            bytes.append(0x2E)
            sentenceLength = 0
            sentenceTarget = 8 + Int(rng.next() % 9)
        } else if rng.next() % 11 == 0 {
            bytes.append(0x2C)
        }
        index += 1
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
        return LLMCompletion(source: .simulated(SimulatedTokens(rng: rng, count: count)), count: count,
                             inputTokens: max(1, wordCount(request.system) + wordCount(request.prompt)))
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

    /// ``vocabulary`` as UTF-8 bytes (all lower-case ASCII), what the generator appends.
    static let vocabularyBytes: [[UInt8]] = vocabulary.map { Array($0.utf8) }
}

/// SplitMix64: a tiny deterministic generator, so the simulated text never depends on the platform's RNG.
struct SeededGenerator: RandomNumberGenerator, Equatable {
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
