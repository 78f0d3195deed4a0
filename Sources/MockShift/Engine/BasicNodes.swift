import Foundation

/// Why a node cannot run with the inputs it got (a number that is no number, or does not fit): the run fails
/// with this message, which ``NodeEvaluator`` prefixes with the node (`node conv: …`; issue 11).
struct NodeInputError: Error, Equatable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Real results for the basic node types (API.md §7, SPEC §6), from inputs already template-resolved. Each
/// returns the node's outputs without `complete`, or nil for a type it does not know. Pure functions: the run
/// engine decides when they run and what gets skipped. Numbers read from inputs are checked, never trapped on:
/// one that cannot be used throws ``NodeInputError``.
enum BasicNodes {
    static func evaluate(type: String, _ inputs: JSONObject) throws(NodeInputError) -> JSONObject? {
        switch type {
        case "text":
            return ["text": .string(inputs["text"]?.templateText ?? "")]
        case "merge":
            let fields = list(inputs["fields"])
            let present = fields.filter { !isEmpty($0) }
            if inputs["function"]?.stringValue == "join" { return ["output": .array(present)] }
            return ["output": present.first ?? .null]
        case "condition":
            return condition(inputs)
        case "combine_text":
            return ["processed_text": .string(list(inputs["text"]).map(\.templateText).joined())]
        case "split_text":
            let text = inputs["text"]?.templateText ?? ""
            let parts: [String]
            switch inputs["delimiter"]?.stringValue ?? "space" {
            case "newline": parts = text.components(separatedBy: "\n")
            case "character(s)":
                let separator = inputs["character"]?.templateText ?? ""
                parts = separator.isEmpty ? [text] : text.components(separatedBy: separator)
            default: parts = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            }
            return ["processed_text": .array(parts.map(JSON.string))]
        case "find_and_replace":
            var text = inputs["text_to_manipulate"]?.templateText ?? ""
            for replacement in list(inputs["replacements"]) {
                let find = replacement["find"]?.templateText ?? ""
                if !find.isEmpty { text = text.replacingOccurrences(of: find, with: replacement["replace"]?.templateText ?? "") }
            }
            return ["processed_text": .string(text)]
        case "text_formatter":
            return ["output": .string(try format(inputs["text"]?.templateText ?? "", inputs))]
        case "create_list":
            return ["output": .array(list(inputs["list"]))]
        case "get_list_item":
            let items = list(inputs["list"])
            // An index beyond the list (however far) has no item: null, as an index of 5 in a list of 1 does.
            let index = try wholeNumber(inputs["index"], "index") ?? 0
            return ["output": items.indices.contains(index) ? items[index] : .null]
        case "join_list_item":
            let separator = flag(inputs["join_by_newline"]) ? "\n" : (inputs["join_characters"]?.templateText ?? "")
            return ["joined_text": .string(list(inputs["list"]).map(\.templateText).joined(separator: separator))]
        case "convert_type":
            return ["converted_value": try convert(inputs["value"] ?? .null, to: inputs["target_type"]?.stringValue ?? "string")]
        case "time":
            return ["processed_time": .string(try time(inputs))]
        default:
            return nil
        }
    }

    // MARK: Condition (API.md §7: first group whose clauses hold, else `path_else`)

    static func condition(_ inputs: JSONObject) -> JSONObject {
        let paths = inputs["outputs"]?.objectValue?.keys ?? []
        let groups = list(inputs["conditions"])
        var taken = "path_else"
        for (i, group) in groups.enumerated() where holds(group) {
            taken = "path_\(i)"
            break
        }
        var outputs = JSONObject()
        for path in paths.isEmpty ? (groups.indices.map { "path_\($0)" } + ["path_else"]) : paths {
            outputs[path] = .bool(path == taken)
        }
        outputs["path_taken"] = .string(taken)
        return outputs
    }

    /// Clauses evaluated in order, joined by the group's AND/OR operators from left to right.
    static func holds(_ group: JSON) -> Bool {
        let terms = list(group["terms"])
        guard let first = terms.first else { return false }
        let operators = list(group["operators"]).map { $0.stringValue?.uppercased() ?? "AND" }
        var result = clause(first)
        for (i, term) in terms.dropFirst().enumerated() {
            let value = clause(term)
            result = (i < operators.count && operators[i] == "OR") ? (result || value) : (result && value)
        }
        return result
    }

    static func clause(_ term: JSON) -> Bool {
        let a = term["operand1"] ?? .null
        let b = term["operand2"] ?? .null
        let text = a.templateText, other = b.templateText
        // Numbers compare as numbers: decimal text only (not "nan", "inf" or hex), overflowing text as ±infinity.
        func compare(_ op: (Double, Double) -> Bool, _ textOp: (String, String) -> Bool) -> Bool {
            if let x = a.doubleValue ?? JSON.decimal(text), let y = b.doubleValue ?? JSON.decimal(other) { return op(x, y) }
            return textOp(text, other)
        }
        switch term["operator"]?.stringValue ?? "" {
        case "Equal": return compare(==, ==)
        case "NotEqual": return compare(!=, !=)
        case "GreaterThan": return compare(>, >)
        case "LessThan": return compare(<, <)
        case "GreaterThanEqual": return compare(>=, >=)
        case "LessThanEqual": return compare(<=, <=)
        case "TextContains": return text.contains(other)
        case "TextDoesNotContains": return !text.contains(other)
        case "TextStartsWith": return text.hasPrefix(other)
        case "TextDoesNotStartWith": return !text.hasPrefix(other)
        case "TextEndsWith": return text.hasSuffix(other)
        case "TextDoesNotEndWith": return !text.hasSuffix(other)
        case "TextGreaterThanNCharacters": return text.count > Int(other) ?? Int.max
        case "TextLessThanNCharacters": return text.count < Int(other) ?? Int.min
        case "IsEmpty": return isEmpty(a)
        case "IsNotEmpty": return !isEmpty(a)
        case "IsTrue": return a == .bool(true) || text.lowercased() == "true"
        case "IsFalse": return a == .bool(false) || text.lowercased() == "false"
        case "VecContainsItem": return vector(a).contains { $0.templateText == other }
        case "VecDoesNotContainsItem": return !vector(a).contains { $0.templateText == other }
        case "MapContainsKey": return (a.objectValue ?? (try? JSON.parse(text))?.objectValue)?[other] != nil
        case "Expression": return !isEmpty(a) && text.lowercased() != "false" && text != "0"
        default: return false
        }
    }

    // MARK: Helpers

    /// A number input: nil when absent, null or empty text; a finite number; otherwise throws naming `field`.
    static func number(_ value: JSON?, _ field: String) throws(NodeInputError) -> Double? {
        guard let value, value != .null else { return nil }
        if let text = value.stringValue, text.trimmingCharacters(in: .whitespaces).isEmpty { return nil }
        guard let d = value.doubleValue else {
            throw NodeInputError("\(field) must be a finite number, got \(value.encodedString().prefix(100))")
        }
        return d
    }

    /// A whole-number input (an index, a count): nil when absent; beyond `Int`'s range it is clamped (an index or
    /// count that large means "past the end" either way); a fraction or a non-number throws naming `field`.
    static func wholeNumber(_ value: JSON?, _ field: String) throws(NodeInputError) -> Int? {
        if let exact = value?.intValue { return Int(exactly: exact) ?? (exact < 0 ? Int.min : Int.max) }
        guard let d = try number(value, field) else { return nil }
        guard d.rounded() == d else { throw NodeInputError("\(field) must be a whole number, got \(value?.encodedString().prefix(100) ?? "")") }
        return Int(exactly: d) ?? (d < 0 ? Int.min : Int.max)
    }

    static func list(_ value: JSON?) -> [JSON] {
        switch value {
        case let .array(items)?: items
        case let .string(s)? where s.hasPrefix("["): (try? JSON.parse(s))?.arrayValue ?? [.string(s)]
        case nil, .null?: []
        case let other?: [other]
        }
    }

    static func vector(_ value: JSON) -> [JSON] { list(value) }

    static func isEmpty(_ value: JSON) -> Bool {
        switch value {
        case .null: true
        case let .string(s): s.isEmpty
        case let .array(a): a.isEmpty
        case let .object(o): o.isEmpty
        default: false
        }
    }

    static func format(_ text: String, _ inputs: JSONObject) throws(NodeInputError) -> String {
        switch inputs["formatter"]?.stringValue ?? "To Uppercase" {
        case "To Lowercase": return text.lowercased()
        case "To Proper Case", "To Title Case": return text.capitalized
        case "Trim": return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case "Truncate":
            let n = try wholeNumber(inputs["max_num_token"], "max_num_token") ?? 0
            return text.split(separator: " ").prefix(max(0, n)).joined(separator: " ")
        default: return text.uppercased()
        }
    }

    /// `convert_type`. Nothing to convert (null, empty text) gives null. Integers: whole numbers as they are,
    /// decimal fractions truncated toward zero (`"2.9"` → 2, `"-0"` → 0), booleans 1 and 0; a number beyond
    /// the type's range (`"1e19"` for int32) or text that is no decimal number (`"nan"`, `"inf"`, `"0x10"`)
    /// throws. `float`: finite numbers only.
    static func convert(_ value: JSON, to type: String) throws(NodeInputError) -> JSON {
        let text = value.templateText.trimmingCharacters(in: .whitespaces)
        func number() throws(NodeInputError) -> Double? {
            if case let .bool(b) = value { return b ? 1 : 0 }
            if text.isEmpty { return nil }
            guard let d = JSON.decimal(text), !(d.isNaN) else {
                throw NodeInputError("cannot convert \(JSON.string(String(text.prefix(64))).encodedString()) to \(type): not a decimal number")
            }
            return d
        }
        switch type {
        case "int32", "int64", "int":
            if case let .bool(b) = value { return .int(b ? 1 : 0) }
            if let exact = value.intValue, type != "int32" || Int32(exactly: exact) != nil { return .int(exact) }
            guard let d = try number() else { return .null }
            // Without an exponent the digits before the point are the whole number, read exactly (through a
            // Double, "-9223372036854775809" would round to Int64.min and pass); with one, the Double must lie
            // strictly inside Int64's range.
            let whole: Int64?
            if !text.contains(where: { $0 == "e" || $0 == "E" }) {
                var digits = String(text.prefix { $0 != "." })
                if digits == "-" || digits == "+" || digits.isEmpty { digits = "0" }
                whole = Int64(digits)
            } else {
                let t = d.rounded(.towardZero)
                whole = t > -0x1p63 && t < 0x1p63 ? Int64(exactly: t) : nil
            }
            let fits = type == "int32" ? whole.flatMap { Int32(exactly: $0) }.map(Int64.init) : whole
            guard let fits else { throw NodeInputError("value \(text.prefix(64)) does not fit \(type)") }
            return .int(fits)
        case "float":
            guard let d = try number() else { return .null }
            guard d.isFinite else { throw NodeInputError("value \(text.prefix(64)) does not fit float") }
            return .double(d)
        case "bool": return .bool(["true", "1", "yes"].contains(text.lowercased()))
        case "timestamp": return .string(text)
        default: return .string(value.templateText)
        }
    }

    /// Seconds since 1970 of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years a four-digit format shows.
    static let timeRange: ClosedRange<Double> = -62_135_596_800...253_402_300_799

    /// The wall-clock time in the node's format (`MM/DD/YYYY` by default; tokens YYYY, MM, DD, HH, mm, ss).
    /// A delta that leaves the years 1 to 9999 (or is no number) throws.
    static func time(_ inputs: JSONObject) throws(NodeInputError) -> String {
        var seconds = time_t(Date().timeIntervalSince1970)
        if flag(inputs["use_delta"]) {
            let delta = try number(inputs["delta_value"], "delta_value") ?? 0
            let unitName = inputs["delta_time_unit"]?.stringValue ?? "days"
            let unit: Double = switch unitName {
            case "seconds": 1
            case "minutes": 60
            case "hours": 3600
            case "weeks": 604_800
            default: 86_400
            }
            let moved = (Double(seconds) + delta * unit).rounded(.down)
            guard timeRange.contains(moved) else {
                throw NodeInputError("delta_value \(delta) \(unitName) moves the time outside the years 1 to 9999")
            }
            seconds = time_t(moved)
        }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
        var out = inputs["output_format"]?.stringValue ?? "MM/DD/YYYY"
        for (token, value) in [("YYYY", pad(parts.tm_year + 1900, 4)), ("MM", pad(parts.tm_mon + 1, 2)), ("DD", pad(parts.tm_mday, 2)),
                               ("HH", pad(parts.tm_hour, 2)), ("mm", pad(parts.tm_min, 2)), ("ss", pad(parts.tm_sec, 2))] {
            out = out.replacingOccurrences(of: token, with: value)
        }
        return out
    }
}
