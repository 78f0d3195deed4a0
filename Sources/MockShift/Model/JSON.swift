import Foundation

/// A JSON value whose objects keep their key order, so that answers list `status` first (SPEC §3) and
/// pipeline documents round-trip, key order included. Parsing is ``JSONParser``; printing is `encoded()`.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    /// Parses `bytes` (``JSONParser``: strict, key order kept, nesting limited); throws ``JSONParseError``.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSON {
        if let parsed = try bytes.withContiguousStorageIfAvailable({ try JSONParser.parse($0) }) { return parsed }
        return try Array(bytes).withUnsafeBufferPointer { try JSONParser.parse($0) }
    }

    /// Parses a UTF-8 string; throws ``JSONParseError`` for malformed JSON.
    public static func parse(_ text: String) throws -> JSON {
        var text = text
        return try text.withUTF8 { try JSONParser.parse($0) }
    }

    /// Compact JSON bytes, object keys in their stored order. Written here rather than with `JSONEncoder`,
    /// which reorders keys (measured) while SPEC §3 wants `status` first.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case let .bool(b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case let .int(i): out.append(contentsOf: String(i).utf8)
        case let .double(d): out.append(contentsOf: (d.isFinite ? "\(d)" : "null").utf8)
        case let .string(s): JSON.writeString(s, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(object):
            out.append(UInt8(ascii: "{"))
            for (i, entry) in object.entries.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(entry.key, into: &out)
                out.append(UInt8(ascii: ":"))
                entry.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `s` as a JSON string (quotes and escapes) to `out`: the bytes `JSON.string(s).encoded()` gives,
    /// without a buffer of their own (the token hot path of event streams).
    static func appendString(_ s: String, to out: inout [UInt8]) { writeString(s, into: &out) }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // The common case, nothing to escape, scanned over the string's contiguous UTF-8 storage.
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            for byte in bytes where byte < 0x20 || byte == 34 || byte == 92 { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Compact JSON text.
    public func encodedString() -> String { String(decoding: encoded(), as: UTF8.self) }

    // MARK: Accessors

    public subscript(key: String) -> JSON? {
        if case let .object(o) = self { return o[key] }
        return nil
    }

    public var objectValue: JSONObject? { if case let .object(o) = self { o } else { nil } }
    public var arrayValue: [JSON]? { if case let .array(a) = self { a } else { nil } }
    public var stringValue: String? { if case let .string(s) = self { s } else { nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { b } else { nil } }
    public var isNull: Bool { self == .null }

    /// An integer for `.int`, or a whole `.double` within `Int64`, or a string of decimal digits (sign and
    /// surrounding spaces allowed) within `Int64`; nil otherwise, never a trap.
    public var intValue: Int64? {
        switch self {
        case let .int(i): i
        // Strictly inside ±2^63: the parser gives a Double for an integer literal beyond Int64, and
        // -9223372036854775809 rounds to exactly -2^63 (Int64.min), which must not pass for it.
        case let .double(d): d > -0x1p63 && d < 0x1p63 ? Int64(exactly: d) : nil
        case let .string(s): Int64(s.trimmingCharacters(in: .whitespaces))
        default: nil
        }
    }

    /// A finite number for `.int` or `.double`, or a string in decimal notation (``decimal(_:)``) whose value is
    /// finite. `"nan"`, `"inf"`, hexadecimal and overflowing text (`"1e400"`) are nil: JSON has no such numbers.
    public var doubleValue: Double? {
        switch self {
        case let .int(i): Double(i)
        case let .double(d): d.isFinite ? d : nil
        case let .string(s): JSON.decimal(s).flatMap { $0.isFinite ? $0 : nil }
        default: nil
        }
    }

    /// The value of `text` written in decimal notation: optional sign, digits with an optional fraction,
    /// optional exponent, spaces around allowed (`" -12.5e3 "`). Overflow gives ±infinity (so huge numbers
    /// still compare in order); anything else (`"nan"`, `"inf"`, `"0x10"`, `""`) is nil. Swift's
    /// `Double(String)` alone would accept those as well.
    public static func decimal(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var bytes = trimmed.utf8[...]
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        func digits() -> Int {
            let n = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.count
            bytes = bytes.dropFirst(n)
            return n
        }
        var mantissa = digits()
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            mantissa += digits()
        }
        guard mantissa > 0 else { return nil }
        if let e = bytes.first, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if let sign = bytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            guard digits() > 0 else { return nil }
        }
        guard bytes.isEmpty else { return nil }
        return Double(trimmed)
    }

    /// Text form used when a value is spliced into a template string: strings as they are, other values as JSON.
    public var templateText: String {
        switch self {
        case let .string(s): s
        case .null: ""
        case let .bool(b): b ? "true" : "false"
        case let .int(i): String(i)
        case let .double(d): d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        default: encodedString()
        }
    }
}

/// A JSON object with ordered keys (insertion order). Small objects (most of them) are searched linearly; from
/// ``indexThreshold`` keys on, a key → position index is kept as well. Without it, parsing a body of 60,000 keys
/// (one ~700 KB request) took minutes of a transport thread (each insert searched every key before it: quadratic),
/// and so would any loop that fills an object from user input (found by `HostileInputTests`).
public struct JSONObject: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var entries: [(key: String, value: JSON)] = []
    /// Position of each key in `entries`; nil while the object is small.
    private var index: [String: Int]?
    static let indexThreshold = 16

    public init() {}
    public init(dictionaryLiteral elements: (String, JSON)...) {
        for (k, v) in elements { self[k] = v }
    }
    public init(_ pairs: [(String, JSON)]) {
        for (k, v) in pairs { self[k] = v }
    }
    /// Takes `entries` as they are; the caller guarantees the keys are distinct (the parser does).
    init(uniqueEntries: [(key: String, value: JSON)]) {
        entries = uniqueEntries
        if entries.count >= Self.indexThreshold { rebuildIndex() }
    }

    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return entries.firstIndex(where: { $0.key == key })
    }

    private mutating func rebuildIndex() {
        var positions = [String: Int](minimumCapacity: entries.count)
        for (i, entry) in entries.enumerated() { positions[entry.key] = i }
        index = positions
    }

    public subscript(key: String) -> JSON? {
        get { position(of: key).map { entries[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    if index != nil { rebuildIndex() }
                }
            } else if let newValue {
                entries.append((key, newValue))
                if index != nil { index![key] = entries.count - 1 } else if entries.count >= Self.indexThreshold { rebuildIndex() }
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSON)]> { entries.makeIterator() }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.count == b.count && a.entries.allSatisfy { b[$0.key] == $0.value }
    }
}

struct JSONKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension JSON: Decodable {
    public init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: JSONKey.self) {
            var object = JSONObject()
            for key in keyed.allKeys { object[key.stringValue] = try keyed.decode(JSON.self, forKey: key) }
            self = .object(object)
            return
        }
        if var list = try? decoder.unkeyedContainer() {
            var items: [JSON] = []
            while !list.isAtEnd { items.append(try list.decode(JSON.self)) }
            self = .array(items)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() { self = .null }
        else if let b = try? single.decode(Bool.self) { self = .bool(b) }
        else if let i = try? single.decode(Int64.self) { self = .int(i) }
        else if let d = try? single.decode(Double.self) { self = .double(d) }
        else { self = .string(try single.decode(String.self)) }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(JSONObject(elements)) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
}

extension JSON {
    /// `.string(s)` or `.null` for nil.
    public static func optional(_ s: String?) -> JSON { s.map(JSON.string) ?? .null }
}
