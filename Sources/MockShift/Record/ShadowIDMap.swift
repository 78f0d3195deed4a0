/// The ids the upstream minted, each mapped to the id MockShift's shadow minted for the same object or run (record
/// mode's fidelity report, issue 15 item 4), so that a later request naming the real id can be sent to the shadow
/// with the shadow's id in its place. One map per shadow namespace; a value type, kept under the shadow's lock.
///
/// Pairs are learnt from two answers to the same request (``learn(real:shadow:)``): wherever both bodies have a
/// string under the same id-like key (`id`, `_id`, or ending in `_id`) at the same place outside arrays (array
/// elements are data: two lists need not hold the same objects in the same order), the real one names the shadow's.
/// The first pair learnt for a real id stays.
public struct ShadowIDMap: Sendable, Equatable {
    /// Real id → shadow id.
    public private(set) var shadowIDs: [String: String] = [:]

    public init() {}

    /// The shadow's id for the real `id`, nil when none was learnt.
    public func shadowID(_ id: String) -> String? { shadowIDs[id] }

    /// True for the keys whose string values are ids: `id`, `_id`, and names ending in `_id`.
    public static func isIDKey(_ key: String) -> Bool { key == "id" || key == "_id" || key.hasSuffix("_id") }

    /// Learns the id pairs two answers to the same request show (see the type's documentation).
    public mutating func learn(real: JSON?, shadow: JSON?) {
        guard case let .object(r)? = real, case let .object(s)? = shadow else { return }
        for (key, value) in r {
            guard let other = s[key] else { continue }
            if Self.isIDKey(key), case let .string(a) = value, case let .string(b) = other, !a.isEmpty, !b.isEmpty, a != b {
                if shadowIDs[a] == nil { shadowIDs[a] = b }
            } else if case .object = value {
                learn(real: value, shadow: other)
            }
        }
    }

    /// Why a request cannot be sent to the shadow: it names a real id the map does not know.
    public static let unknownID = "names an object or run the mock does not know (made before the recording, or by a request not compared)"

    /// `path` with each segment that `pattern` (its route template, `/v1/pipeline/:id/run`) marks as a parameter
    /// replaced by its shadow id; nil when such a segment is no id the map knows. A path no route takes (no
    /// pattern) is kept as it is.
    public func translate(path: String, pattern: String?) -> String? {
        guard let pattern else { return path }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let template = pattern.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == template.count else { return path }
        var out: [String] = []
        for (part, slot) in zip(parts, template) {
            if slot.hasPrefix(":") {
                guard let id = shadowIDs[part] else { return nil }
                out.append(id)
            } else {
                out.append(part)
            }
        }
        return "/" + out.joined(separator: "/")
    }

    /// The query with the values of id-like names (``isIDKey(_:)``) replaced by their shadow ids, and any other
    /// value that is a known real id too; nil when an id-like name's non-empty value is unknown.
    public func translate(query: [(name: String, value: String)]) -> [(name: String, value: String)]? {
        var out: [(name: String, value: String)] = []
        for (name, value) in query {
            if let id = shadowIDs[value] {
                out.append((name, id))
            } else if Self.isIDKey(name) && !value.isEmpty {
                return nil
            } else {
                out.append((name, value))
            }
        }
        return out
    }

    /// The body with every string that is a known real id replaced by its shadow id (anywhere: a chatbot names its
    /// pipeline, a terminate its run); nil when a run-naming member at the top (`run_id`, `pipeline_run_id`,
    /// `task_id`, `conversation_id`, the items of `run_ids`) holds a non-empty id the map does not know.
    public func translate(body: JSON) -> JSON? {
        if case let .object(top) = body {
            for key in ["run_id", "pipeline_run_id", "task_id", "conversation_id"] {
                if case let .string(id)? = top[key], !id.isEmpty, shadowIDs[id] == nil { return nil }
            }
            for item in top["run_ids"]?.arrayValue ?? [] {
                if case let .string(id) = item, !id.isEmpty, shadowIDs[id] == nil { return nil }
            }
        }
        return replaced(body)
    }

    private func replaced(_ value: JSON) -> JSON {
        switch value {
        case let .string(text): .string(shadowIDs[text] ?? text)
        case let .array(items): .array(items.map(replaced))
        case let .object(object): .object(JSONObject(object.entries.map { ($0.key, replaced($0.value)) }))
        default: value
        }
    }
}
