import Foundation

/// Finds secrets in what `mockshift snapshot` writes and replaces them with a placeholder (issue 15 item 1: "secrets
/// found in node inputs replaced by a placeholder and listed on standard error").
///
/// A string is a secret when:
/// - its key names one: the key, lowercased with everything but letters and digits removed, ends with `apikey`,
///   `token`, `secret`, `password`, `passwd`, `passphrase`, `authorization`, `accesskey`, `privatekey` or
///   `credential(s)` (so `api_key`, `apiKey`, `x-api-key`, `access_token`, `client_secret`, `Authorization`), and
///   does not start with `max`, `min` or `num` (`max_tokens` is a count, not a secret);
/// - or it is the `value` of an object whose `key` or `name` names one (`headers: [{"key": "Authorization",
///   "value": "Bearer …"}]`, the shape of an API node's headers);
/// - or it holds text shaped like a key: `sk-…` (OpenAI, Anthropic), `ghp_…` and the other GitHub prefixes,
///   `xox?-…` (Slack), `AKIA…` (AWS), `AIza…` (Google), `hf_…` (Hugging Face), a JWT (`eyJ….….…`) or
///   `Bearer ` followed by a long token. Only that part of the text is replaced.
///
/// Not secrets: non-string values (`use_personal_api_key: false`), empty strings, a template alone (`{{ a.b }}`:
/// a reference, not a value) and a placeholder already there (a snapshot of a snapshot changes nothing).
/// The placeholder is `<redacted:FIELD>`, FIELD the key the value was found under, so the same account always
/// gives the same bytes.
public enum SecretRedactor {
    /// One secret that was replaced: where (a path of keys and list indexes inside the value handed to
    /// ``redact(_:at:)``, e.g. `api_key` or `headers[0].value`), never the secret itself.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var description: String { path }
    }

    static let secretSuffixes = ["apikey", "token", "secret", "password", "passwd", "passphrase", "authorization",
                                 "accesskey", "privatekey", "credential", "credentials"]
    static let countPrefixes = ["max", "min", "num"]

    /// True when a value stored under `key` is a secret by its name (see the type's comment).
    public static func isSecretKey(_ key: String) -> Bool {
        let folded = String(key.lowercased().unicodeScalars.filter { ("a"..."z").contains($0) || ("0"..."9").contains($0) })
        guard secretSuffixes.contains(where: folded.hasSuffix) else { return false }
        return !countPrefixes.contains(where: folded.hasPrefix)
    }

    /// The placeholder that stands for a secret found under `field`.
    public static func placeholder(_ field: String) -> String { "<redacted:\(field)>" }

    /// `value` with every secret replaced (recursively through objects and lists), and where each one was.
    /// `path` is the path of `value` itself (empty at the top), `key` the key it is stored under, if any (the key
    /// of a string decides whether it is a secret by its name).
    public static func redact(_ value: JSON, at path: String = "", key: String? = nil) -> (value: JSON, findings: [Finding]) {
        var findings: [Finding] = []
        let cleaned = walk(value, key: key, path: path, secretByName: false, findings: &findings)
        return (cleaned, findings)
    }

    private static func walk(_ value: JSON, key: String?, path: String, secretByName: Bool, findings: inout [Finding]) -> JSON {
        switch value {
        case let .string(text):
            let field = key ?? "value"
            if secretByName || key.map(isSecretKey) == true {
                guard isRedactable(text) else { return value }
                findings.append(Finding(path: path))
                return .string(placeholder(field))
            }
            let replaced = replacingKeyShapedText(in: text, with: placeholder(field))
            if replaced != text { findings.append(Finding(path: path)) }
            return .string(replaced)
        case let .array(items):
            return .array(items.enumerated().map { i, item in
                walk(item, key: key, path: "\(path)[\(i)]", secretByName: false, findings: &findings)
            })
        case let .object(object):
            // `{"key": "Authorization", "value": "…"}`: the value is named by its sibling.
            let sibling = (object["key"]?.stringValue ?? object["name"]?.stringValue).map(isSecretKey) ?? false
            var out = JSONObject()
            for (k, v) in object {
                let childPath = path.isEmpty ? k : "\(path).\(k)"
                out[k] = walk(v, key: k, path: childPath, secretByName: sibling && k == "value", findings: &findings)
            }
            return .object(out)
        default:
            return value
        }
    }

    /// False for what is no secret even under a secret's name: empty, a template alone, a placeholder.
    static func isRedactable(_ text: String) -> Bool {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty || (trimmed.hasPrefix("<redacted:") && trimmed.hasSuffix(">")) { return false }
        if trimmed.hasPrefix("{{"), trimmed.hasSuffix("}}"), trimmed.dropFirst(2).dropLast(2).firstRange(of: "{{") == nil {
            return false
        }
        return true
    }

    /// Key-shaped tokens (see the type's comment). Each must start at the beginning of the text or after a
    /// character that is not a letter, digit, `_` or `-`.
    nonisolated(unsafe) static let keyShapes: [Regex<Substring>] = [
        /sk-[A-Za-z0-9_\-]{16,}/,
        /(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}/,
        /xox[abeprs]-[A-Za-z0-9\-]{10,}/,
        /AKIA[0-9A-Z]{16}/,
        /AIza[0-9A-Za-z_\-]{35}/,
        /hf_[A-Za-z0-9]{30,}/,
        /eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}/,
        /(?i:bearer)\s+[A-Za-z0-9._~+\/=\-]{16,}/,
    ]

    /// `text` with each key-shaped token replaced by `replacement`.
    static func replacingKeyShapedText(in text: String, with replacement: String) -> String {
        guard text.utf8.count >= 16 else { return text }
        var ranges: [Range<String.Index>] = []
        for shape in keyShapes {
            for match in text.matches(of: shape) {
                if match.range.lowerBound > text.startIndex {
                    let before = text[text.index(before: match.range.lowerBound)]
                    if before.isLetter || before.isNumber || before == "_" || before == "-" { continue }
                }
                ranges.append(match.range)
            }
        }
        guard !ranges.isEmpty else { return text }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var out = "", cursor = text.startIndex
        for range in ranges where range.lowerBound >= cursor {
            out += text[cursor..<range.lowerBound]
            out += replacement
            cursor = range.upperBound
        }
        return out + text[cursor...]
    }
}
