import Glibc

/// A scripted answer's `prompt_pattern`: a POSIX extended regular expression (glibc: also `\\b`, `\\w`, `\\s`),
/// searched in the resolved prompt; a leading `(?i)` makes it case-insensitive. Compiled once.
///
/// Not Swift `Regex`, which backtracks without bound: `(a+)+$` against 28 characters held the scheduler's one
/// thread for minutes, stalling every key's runs and the shutdown (found by a newcomer review). glibc's matcher
/// is polynomial for patterns without back-references, which are refused, and only the first
/// ``searchedPrefix`` characters of a prompt are searched, so one match costs milliseconds at worst.
public final class PromptPattern: @unchecked Sendable {
    // @unchecked: `regex` is written by init only; glibc's regexec is safe to call from several threads.
    private var regex = regex_t()

    /// Characters of the prompt searched.
    public static let searchedPrefix = 4096

    /// Compiles `pattern`; nil when it is not a valid pattern or uses back-references (`\\1`…`\\9`).
    public init?(_ pattern: String) {
        var text = Substring(pattern)
        var flags = REG_EXTENDED | REG_NOSUB
        if text.hasPrefix("(?i)") {
            text = text.dropFirst(4)
            flags |= REG_ICASE
        }
        let bytes = Array(text.utf8)
        for i in bytes.indices.dropLast() where bytes[i] == UInt8(ascii: "\\") && (49...57).contains(bytes[i + 1]) {
            return nil
        }
        guard !bytes.contains(0), regcomp(&regex, String(text), flags) == 0 else { return nil }
    }

    deinit { regfree(&regex) }

    /// True when the pattern occurs in the first ``searchedPrefix`` characters of `prompt`.
    public func matches(_ prompt: String) -> Bool {
        let searched = prompt.count > Self.searchedPrefix ? String(prompt.prefix(Self.searchedPrefix)) : prompt
        return regexec(&regex, searched, 0, nil, 0) == 0
    }
}
