/// A scripted LLM answer (SPEC §6 "Fixtures can script an LLM's answer"; recorded answers, issue 15 item 3): for the
/// LLM nodes it matches (node id or name, and the resolved prompt: a regular expression searched in it, or the whole
/// prompt exactly), it sets the text, the timing, or a failure after N tokens. Unset parts keep the simulation's.
///
/// A recorded answer carries its token boundaries and, optionally, when each token came: ``tokenEnds`` and
/// ``tokenOffsetsMilliseconds``; a run it matches emits exactly those tokens at those moments (simulated time,
/// scaled by `--time-scale` like the rest). Field checks (400 naming the field) are the API's (`LLMScripts.add`).
public struct LLMScript: Sendable {
    /// `node_id`: only the LLM node with this id.
    public var nodeID: String?
    /// `node`: only the LLM node with this id or this name.
    public var node: String?
    public var promptPattern: String? { didSet { compiled = promptPattern.flatMap(PromptPattern.init) } }
    /// `promptPattern` compiled once.
    var compiled: PromptPattern?
    /// `prompt`: only this resolved prompt, compared whole and literally.
    public var prompt: String?
    /// The answer's text; with ``tokenEnds`` nil it is cut into tokens by words (``tokens(of:)``).
    public private(set) var response: String?
    /// Where each token of ``response`` ends (UTF-8 byte offsets, increasing): a recorded answer's own token
    /// boundaries (`tokens`). Nil for a text cut by words.
    public private(set) var tokenEnds: [UInt32]?
    /// `token_offsets_ms`: for token `i`, simulated milliseconds from the node's start to its emission
    /// (non-decreasing; the first is the time to first token). Exactly one per token of ``tokenEnds``; it replaces
    /// the time to first token and rate of the node.
    public var tokenOffsetsMilliseconds: [Double]?
    public var ttftMilliseconds: Double?
    public var tokensPerSecond: Double?
    public var failAfterTokens: Int?
    public var message: String

    public init(nodeID: String? = nil, promptPattern: String? = nil, response: String? = nil, ttftMilliseconds: Double? = nil,
                tokensPerSecond: Double? = nil, failAfterTokens: Int? = nil, message: String = "scripted LLM failure") {
        self.nodeID = nodeID
        self.promptPattern = promptPattern
        self.compiled = promptPattern.flatMap(PromptPattern.init)
        self.response = response
        self.ttftMilliseconds = ttftMilliseconds
        self.tokensPerSecond = tokensPerSecond
        self.failAfterTokens = failAfterTokens
        self.message = message
    }

    /// Sets the answer to the concatenation of `tokens`, keeping their boundaries (a recorded answer).
    public mutating func setTokens(_ tokens: [String]) {
        var text = ""
        var ends: [UInt32] = []
        ends.reserveCapacity(tokens.count)
        var offset = 0
        for token in tokens {
            text += token
            offset += token.utf8.count
            ends.append(UInt32(clamping: offset))
        }
        response = text
        tokenEnds = ends
    }

    /// Sets the answer to `text`, cut into tokens by words (``tokens(of:)``).
    public mutating func setResponse(_ text: String?) {
        response = text
        tokenEnds = nil
    }

    /// True when the script applies to the node `nodeID` (named `nodeName`) with `prompt` (see ``PromptPattern``).
    public func matches(nodeID: String, nodeName: String? = nil, prompt: String) -> Bool {
        if let id = self.nodeID, id != nodeID { return false }
        if let node, node != nodeID && node != nodeName { return false }
        if let exact = self.prompt { return exact == prompt }
        guard let pattern = promptPattern, !pattern.isEmpty else { return true }
        return compiled?.matches(prompt) ?? prompt.contains(pattern)
    }

    /// Applies the script's text to `completion`: the recorded tokens, or the text cut by words.
    func apply(to completion: inout LLMCompletion) {
        guard let response else { return }
        if let tokenEnds { completion.setText(response, ends: tokenEnds) } else { completion.setText(response) }
    }

    /// The scripted text as tokens: one per word, each after the first with its leading space.
    public static func tokens(of text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for ch in text {
            if ch == " " && !current.isEmpty && current != " " {
                tokens.append(current)
                current = ""
            }
            current.append(ch)
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// Longest prompt an ``unrecorded(_:_:node:prompt:)`` message quotes, in characters.
    static let quotedPromptLimit = 500

    /// The error of a run that `serve --replay-strict` fails because no scripted answer matched an LLM node:
    /// `no recorded answer for pipeline "p" node "llm_0" prompt "…"` (`what` is `pipeline` or `agent`). Names and
    /// prompt are quoted as JSON strings (quotes, newlines escaped); a prompt beyond ``quotedPromptLimit``
    /// characters is cut there and ends with `…` after the closing quote.
    static func unrecorded(_ what: String, _ name: String, node: String, prompt: String) -> String {
        func quoted(_ text: String) -> String { JSON.string(text).encodedString() }
        let cut = prompt.count > quotedPromptLimit
        let shown = cut ? String(prompt.prefix(quotedPromptLimit)) : prompt
        return "no recorded answer for \(what) \(quoted(name)) node \(quoted(node)) prompt \(quoted(shown))\(cut ? "…" : "")"
    }
}
