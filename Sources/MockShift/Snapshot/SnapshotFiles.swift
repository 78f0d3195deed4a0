import Crypto
import Foundation

/// The files `mockshift snapshot` (and the recorder of `serve --record`) writes: one fixture file per object, named
/// and printed so that the same account always gives the same bytes (issue 15 item 1).
///
/// - Names: `pipeline-<slug>.json`, `chatbot-<slug>.json`, `agent-<slug>.json`, the slug being the object's name in
///   lowercase ASCII letters, digits, `_` and `-` (any other run of characters becomes one `-`, at most 60
///   characters, `unnamed` when nothing is left). When two names of one kind give the same slug (`Support Bot`,
///   `support-bot`), a name that is its own slug keeps the plain file name and each other one gets
///   `-<8 hex of SHA-256 of the name>` added: a rule of the names alone, never of listing order.
/// - Content: pretty-printed with two spaces, object keys sorted by code point, UTF-8 as it is (no `\u` escapes
///   but for control characters), a newline at the end: Python's `json.dumps(indent=2, sort_keys=True,
///   ensure_ascii=False)` layout, so diffs of a snapshot folder read well.
public enum SnapshotFiles {
    /// The kinds of file: the objects a snapshot writes, and the scripted answers a recording writes (`llm-…`),
    /// each named after its prefix.
    public enum Kind: String, Sendable, CaseIterable {
        case pipeline, chatbot, agent, llm

        /// The kinds that are objects of the account.
        public static let objects: [Kind] = [.pipeline, .chatbot, .agent]
    }

    /// The slug of `name` (see the type's comment).
    public static func slug(_ name: String) -> String {
        var out = ""
        var pendingDash = false
        for scalar in name.lowercased().unicodeScalars {
            let keep = ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_"
            if keep {
                if pendingDash && !out.isEmpty { out.append("-") }
                pendingDash = false
                out.unicodeScalars.append(scalar)
                if out.count >= 60 { break }
            } else {
                pendingDash = true
            }
        }
        return out.isEmpty ? "unnamed" : out
    }

    /// File names for the objects of one kind, by name (names are distinct within a kind: the fixtures key
    /// objects by name).
    public static func fileNames(_ kind: Kind, names: some Sequence<String>) -> [String: String] {
        var bySlug: [String: [String]] = [:]
        for name in Set(names) { bySlug[slug(name), default: []].append(name) }
        var out: [String: String] = [:]
        for (slug, group) in bySlug {
            for name in group {
                out[name] = group.count == 1 || name == slug
                    ? "\(kind.rawValue)-\(slug).json"
                    : "\(kind.rawValue)-\(slug)-\(shortHash(name)).json"
            }
        }
        return out
    }

    /// True for the file name of an object (`pipeline-….json`, `chatbot-….json`, `agent-….json`; not `llm-…`).
    public static func isSnapshotFile(_ fileName: String) -> Bool {
        fileName.hasSuffix(".json") && Kind.objects.contains { fileName.hasPrefix("\($0.rawValue)-") }
    }

    static func shortHash(_ name: String) -> String {
        let digest = SHA256.hash(data: Array(name.utf8))
        return digest.prefix(4).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined()
    }

    // MARK: Printing

    /// `value` pretty-printed with sorted keys and a final newline (see the type's comment).
    public static func render(_ value: JSON) -> [UInt8] {
        var out: [UInt8] = []
        write(value, indent: 0, into: &out)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    private static func write(_ value: JSON, indent: Int, into out: inout [UInt8]) {
        func newline(_ level: Int) {
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
        }
        switch value {
        case let .array(items) where !items.isEmpty:
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                write(item, indent: indent + 1, into: &out)
            }
            newline(indent)
            out.append(UInt8(ascii: "]"))
        case let .object(object) where !object.isEmpty:
            out.append(UInt8(ascii: "{"))
            let sorted = object.entries.sorted { Array($0.key.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.key.unicodeScalars.map(\.value)) }
            for (i, entry) in sorted.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                out.append(contentsOf: JSON.string(entry.key).encoded())
                out.append(contentsOf: Array(": ".utf8))
                write(entry.value, indent: indent + 1, into: &out)
            }
            newline(indent)
            out.append(UInt8(ascii: "}"))
        default:
            out.append(contentsOf: value.encoded())  // scalars, `[]` and `{}`
        }
    }

    // MARK: Writing

    /// A file that could not be put in place.
    public struct WriteError: Error, CustomStringConvertible {
        public var description: String
    }

    /// What ``write(_:into:)`` did to each file.
    public struct WriteOutcome: Sendable, Equatable {
        public var written: [String] = []
        public var unchanged: [String] = []
    }

    /// Writes each `(file name, bytes)` into `directory` (created if missing). A file whose bytes are already
    /// those is left alone (not even its time changes); others are written to a temporary file and renamed over
    /// the old one, so a reader never sees half a file. Throws when the folder or a file cannot be written.
    public static func write(_ files: [(name: String, bytes: [UInt8])], into directory: String) throws -> WriteOutcome {
        let folder = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var outcome = WriteOutcome()
        for file in files {
            let target = folder.appendingPathComponent(file.name)
            if let existing = FileManager.default.contents(atPath: target.path), Array(existing) == file.bytes {
                outcome.unchanged.append(file.name)
                continue
            }
            let temporary = folder.appendingPathComponent(".\(file.name).\(getpid()).tmp")
            try Data(file.bytes).write(to: temporary)
            if rename(temporary.path, target.path) != 0 {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(at: temporary)
                throw WriteError(description: "cannot write \(target.path): \(reason)")
            }
            outcome.written.append(file.name)
        }
        return outcome
    }
}
