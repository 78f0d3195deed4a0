import Foundation

/// Real results for the basic node types (API.md §7, SPEC §6), from inputs already template-resolved. Each
/// returns the node's outputs without `complete`, or nil for a type it does not know. Pure functions: the run
/// engine decides when they run and what gets skipped.
enum BasicNodes {
    static func evaluate(type: String, _ inputs: JSONObject) -> JSONObject? {
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
            return ["output": .string(format(inputs["text"]?.templateText ?? "", inputs))]
        case "create_list":
            return ["output": .array(list(inputs["list"]))]
        case "get_list_item":
            let items = list(inputs["list"])
            let index = Int(inputs["index"]?.intValue ?? 0)
            return ["output": items.indices.contains(index) ? items[index] : .null]
        case "join_list_item":
            let separator = flag(inputs["join_by_newline"]) ? "\n" : (inputs["join_characters"]?.templateText ?? "")
            return ["joined_text": .string(list(inputs["list"]).map(\.templateText).joined(separator: separator))]
        case "convert_type":
            return ["converted_value": convert(inputs["value"] ?? .null, to: inputs["target_type"]?.stringValue ?? "string")]
        case "time":
            return ["processed_time": .string(time(inputs))]
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
        func compare(_ op: (Double, Double) -> Bool, _ textOp: (String, String) -> Bool) -> Bool {
            if let x = a.doubleValue ?? Double(text), let y = b.doubleValue ?? Double(other) { return op(x, y) }
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

    static func format(_ text: String, _ inputs: JSONObject) -> String {
        switch inputs["formatter"]?.stringValue ?? "To Uppercase" {
        case "To Lowercase": return text.lowercased()
        case "To Proper Case", "To Title Case": return text.capitalized
        case "Trim": return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case "Truncate":
            let n = Int(inputs["max_num_token"]?.intValue ?? 0)
            return text.split(separator: " ").prefix(max(0, n)).joined(separator: " ")
        default: return text.uppercased()
        }
    }

    static func convert(_ value: JSON, to type: String) -> JSON {
        let text = value.templateText.trimmingCharacters(in: .whitespaces)
        switch type {
        case "int32", "int64", "int": return value.intValue.map(JSON.int) ?? Double(text).map { .int(Int64($0)) } ?? .null
        case "float": return value.doubleValue.map(JSON.double) ?? .null
        case "bool": return .bool(["true", "1", "yes"].contains(text.lowercased()))
        case "timestamp": return .string(text)
        default: return .string(value.templateText)
        }
    }

    /// The wall-clock time in the node's format (`MM/DD/YYYY` by default; tokens YYYY, MM, DD, HH, mm, ss).
    static func time(_ inputs: JSONObject) -> String {
        var seconds = time_t(Date().timeIntervalSince1970)
        if flag(inputs["use_delta"]) {
            let delta = inputs["delta_value"]?.doubleValue ?? 0
            let unit: Double = switch inputs["delta_time_unit"]?.stringValue ?? "days" {
            case "seconds": 1
            case "minutes": 60
            case "hours": 3600
            case "weeks": 604_800
            default: 86_400
            }
            seconds += time_t(delta * unit)
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
