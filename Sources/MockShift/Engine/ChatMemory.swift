import Foundation

/// A conversation's earlier messages, handed to a run so its `chat_memory` nodes can show them (SPEC §9). The
/// engine knows no chatbots: whoever starts the run (the chatbot handlers) builds this from stored turns.
public struct ChatHistory: Sendable, Equatable {
    /// One message of the conversation.
    public struct Message: Sendable, Equatable {
        public enum Role: String, Sendable { case human, ai }
        public var role: Role
        public var text: String
        /// An answer the user stopped: `text` is what was generated before the stop.
        public var stopped: Bool

        public init(role: Role, text: String, stopped: Bool = false) {
            self.role = role
            self.text = text
            self.stopped = stopped
        }

        /// The text as memory shows it: a stopped answer ends with ` [stopped]` (SPEC §9).
        var shown: String { stopped ? (text.isEmpty ? "[stopped]" : text + " [stopped]") : text }
    }

    /// Earlier messages, oldest first (the current user text excluded).
    public var messages: [Message]
    /// The current user text (what `Vector Database` memory compares with).
    public var currentText: String

    public init(messages: [Message], currentText: String) {
        self.messages = messages
        self.currentText = currentText
    }
}

/// The `memory` output of a `chat_memory` node (SPEC §9, SDK `ChatMemoryNode`): the conversation's earlier
/// messages in the format of `memory_type`, limited by `memory_window`.
enum ChatMemory {
    /// Formats `history` for `memoryType` (default `Token Buffer`) and `window` (default 2048; the SDK's).
    ///
    /// - Formatted types give one line per message, `User: …` / `Assistant: …`, joined by newlines:
    ///   `Full - Formatted` all; `Message Buffer` the last `window`; `Token Buffer` the newest whose words (split
    ///   on white space) fit in `window` together; `Vector Database` the `window` messages sharing most distinct
    ///   words (case-insensitive) with the current text (ties: the newer), in conversation order.
    /// - `Full - Raw` gives the JSON text of a list of `{"type":"human"|"ai","message":…}`.
    /// An unknown type is formatted like `Full - Formatted`. With no history the memory is `""` (`[]` raw).
    static func memory(_ history: ChatHistory, type memoryType: String?, window: Int?) -> String {
        let messages = history.messages
        let window = max(0, window ?? 2048)
        func formatted(_ chosen: [ChatHistory.Message]) -> String {
            chosen.map { ($0.role == .human ? "User: " : "Assistant: ") + $0.shown }.joined(separator: "\n")
        }
        switch memoryType ?? "Token Buffer" {
        case "Full - Raw":
            let items = messages.map { JSON.object(["type": .string($0.role.rawValue), "message": .string($0.shown)]) }
            return JSON.array(items).encodedString()
        case "Message Buffer":
            return formatted(Array(messages.suffix(window)))
        case "Token Buffer":
            var chosen: [ChatHistory.Message] = []
            var used = 0
            for message in messages.reversed() {
                let words = wordCount(message.shown)
                guard used + words <= window else { break }
                used += words
                chosen.insert(message, at: 0)
            }
            return formatted(chosen)
        case "Vector Database":
            let current = Set(words(history.currentText))
            let ranked = messages.indices.sorted { a, b in
                let sa = Set(words(messages[a].shown)).intersection(current).count
                let sb = Set(words(messages[b].shown)).intersection(current).count
                return sa != sb ? sa > sb : a > b
            }
            return formatted(ranked.prefix(window).sorted().map { messages[$0] })
        default:
            return formatted(messages)
        }
    }

    static func words(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
    }

    static func wordCount(_ text: String) -> Int {
        text.split(whereSeparator: { $0.isWhitespace }).count
    }
}
