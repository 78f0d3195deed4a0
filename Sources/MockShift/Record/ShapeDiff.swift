/// One way a mock answer's shape differs from the real service's (issue 15 item 4): a status code, a key only one
/// side has, or a value of another JSON type. Values themselves are never kept: only where and which types, so a
/// difference can be written to a report without the data (which may hold secrets) that showed it.
public struct ShapeDifference: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// The status codes differ; ``real`` and ``mock`` hold them.
        case status
        /// The real answer has the key, the mock's lacks it (``mock`` is `absent`).
        case missing
        /// The mock's answer has a key the real one lacks (``real`` is `absent`).
        case extra
        /// Both have a value there, of different JSON types.
        case type
    }

    public let kind: Kind
    /// Where, with any array element written `[*]`: `$` is the body, `.key` an object member (`["odd key"]` when
    /// the key is not a plain identifier), `[*]` an element; `status` for a status difference. Differences are
    /// told apart by kind, path and the two sides.
    public let path: String
    /// The same place with the element indexes where it was first seen (`$.runs[3].id`).
    public let examplePath: String
    /// The real side: a type name (``typeName(_:)``, `absent` for a missing key), or the status code.
    public let real: String
    /// The mock side, as ``real``.
    public let mock: String

    public init(kind: Kind, path: String, examplePath: String? = nil, real: String, mock: String) {
        self.kind = kind
        self.path = path
        self.examplePath = examplePath ?? path
        self.real = real
        self.mock = mock
    }

    /// What tells differences apart (the example path aside): kind, path and both sides.
    public var key: String { "\(kind.rawValue) \(path) \(real) \(mock)" }

    /// One line: `$.outputs.x: string vs number`, `$.id: missing in mock (string)`, `$.extra: extra in mock
    /// (object)`, `status: 200 vs 404` (real first).
    public var summary: String {
        switch kind {
        case .status, .type: "\(path): \(real) vs \(mock)"
        case .missing: "\(path): missing in mock (\(real))"
        case .extra: "\(path): extra in mock (\(mock))"
        }
    }

    /// The JSON type of `value`: `null`, `boolean`, `number` (integer or not), `string`, `array` or `object`;
    /// `none` for no JSON body at all (an empty or non-JSON answer).
    public static func typeName(_ value: JSON?) -> String {
        switch value {
        case nil: "none"
        case .null?: "null"
        case .bool?: "boolean"
        case .int?, .double?: "number"
        case .string?: "string"
        case .array?: "array"
        case .object?: "object"
        }
    }
}

/// Compares two JSON answers by shape, not by value (issue 15 item 4: what the fidelity report is made of). Pure
/// functions, no state.
///
/// Objects are compared key by key (in the real answer's order, then the mock's extra keys); arrays element by
/// element, the first `min(count)` pairs, since their length is data; any other pair of values only by type
/// (`1` and `2.5` are both numbers). A difference found at several elements of an array is reported once, with
/// the first element's path as example. The result is in the order found: the real answer's key order, depth first.
public enum ShapeDiff {
    /// The shape differences between a real answer and the mock's: their status codes, then, when both are of the
    /// same class (2xx, 4xx, ...), their bodies (`nil` for no JSON body). Bodies of different classes (a 200 against
    /// a 404) are not compared: the status says it all.
    public static func compare(realStatus: Int, realBody: JSON?, mockStatus: Int, mockBody: JSON?) -> [ShapeDifference] {
        var found: [ShapeDifference] = []
        if realStatus != mockStatus {
            found.append(ShapeDifference(kind: .status, path: "status", real: String(realStatus), mock: String(mockStatus)))
            if realStatus / 100 != mockStatus / 100 { return found }
        }
        return found + compare(real: realBody, mock: mockBody)
    }

    /// The shape differences between two JSON bodies (`nil`: no JSON body), each distinct one once.
    public static func compare(real: JSON?, mock: JSON?) -> [ShapeDifference] {
        var walk = Walk()
        switch (real, mock) {
        case (nil, nil): break
        case let (real?, mock?): walk.compare(real, mock, path: "$", example: "$")
        default:
            walk.note(ShapeDifference(kind: .type, path: "$", real: ShapeDifference.typeName(real), mock: ShapeDifference.typeName(mock)))
        }
        return walk.found
    }

    /// `.key`, or `["key"]` (a JSON string) when `key` is not a plain identifier (letters, digits, `_`, not
    /// starting with a digit), so that every path reads back to one place.
    static func member(_ key: String) -> String {
        let plain = !key.isEmpty && key.utf8.allSatisfy { b in
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F
        } && !(key.utf8.first! >= 0x30 && key.utf8.first! <= 0x39)
        return plain ? "." + key : "[" + JSON.string(key).encodedString() + "]"
    }

    /// One comparison's walk: what it found so far, each distinct difference once.
    private struct Walk {
        var found: [ShapeDifference] = []
        var seen: Set<String> = []

        mutating func note(_ difference: ShapeDifference) {
            if seen.insert(difference.key).inserted { found.append(difference) }
        }

        mutating func compare(_ real: JSON, _ mock: JSON, path: String, example: String) {
            switch (real, mock) {
            case let (.object(r), .object(m)):
                for (key, value) in r {
                    let member = ShapeDiff.member(key)
                    if let other = m[key] {
                        compare(value, other, path: path + member, example: example + member)
                    } else {
                        note(ShapeDifference(kind: .missing, path: path + member, examplePath: example + member,
                                             real: ShapeDifference.typeName(value), mock: "absent"))
                    }
                }
                for (key, value) in m where r[key] == nil {
                    let member = ShapeDiff.member(key)
                    note(ShapeDifference(kind: .extra, path: path + member, examplePath: example + member,
                                         real: "absent", mock: ShapeDifference.typeName(value)))
                }
            case let (.array(r), .array(m)):
                for i in 0..<min(r.count, m.count) {
                    compare(r[i], m[i], path: path + "[*]", example: example + "[\(i)]")
                }
            default:
                let (a, b) = (ShapeDifference.typeName(real), ShapeDifference.typeName(mock))
                if a != b { note(ShapeDifference(kind: .type, path: path, examplePath: example, real: a, mock: b)) }
            }
        }
    }
}
