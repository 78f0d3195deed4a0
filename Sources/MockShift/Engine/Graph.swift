/// `{{ node_id.field }}` templates (API.md §6): references, found anywhere inside strings, lists and objects,
/// and their resolution against node outputs. Spaces inside the braces are optional.
public enum Templates {
    /// One reference: the node it names (id, or name as a fallback) and the output field (may contain dots).
    public struct Reference: Hashable, Sendable {
        public var node: String
        public var field: String
    }

    /// One template found in a string: where it is (UTF-8 offsets, braces included) and what it names.
    struct Match {
        var range: Range<Int>
        var reference: Reference
    }

    /// Every `{{ node.field }}` in `s`, left to right: `node` is `[A-Za-z0-9_-]+`, `field` is `[A-Za-z0-9_.-]+`,
    /// ASCII white space allowed inside the braces. A hand-written scanner: Swift `Regex` made template
    /// resolution the largest cost of an instant run (measured with `scripts/bench-instant-runs`).
    static func matches(in s: String) -> [Match] {
        let bytes = Array(s.utf8)
        var found: [Match] = []
        func isNameByte(_ b: UInt8) -> Bool {
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 95 || b == 45
        }
        func isSpace(_ b: UInt8) -> Bool { b == 32 || (b >= 9 && b <= 13) }
        var i = 0
        while i + 1 < bytes.count {
            guard bytes[i] == 123, bytes[i + 1] == 123 else { i += 1; continue }  // "{{"
            var j = i + 2
            while j < bytes.count, isSpace(bytes[j]) { j += 1 }
            let nodeStart = j
            while j < bytes.count, isNameByte(bytes[j]) { j += 1 }
            let nodeEnd = j
            guard nodeEnd > nodeStart, j < bytes.count, bytes[j] == 46 else { i += 1; continue }  // "."
            j += 1
            let fieldStart = j
            while j < bytes.count, isNameByte(bytes[j]) || bytes[j] == 46 { j += 1 }
            let fieldEnd = j
            while j < bytes.count, isSpace(bytes[j]) { j += 1 }
            guard fieldEnd > fieldStart, j + 1 < bytes.count, bytes[j] == 125, bytes[j + 1] == 125 else { i += 1; continue }
            let node = String(decoding: bytes[nodeStart..<nodeEnd], as: UTF8.self)
            let field = String(decoding: bytes[fieldStart..<fieldEnd], as: UTF8.self)
            found.append(Match(range: i..<(j + 2), reference: Reference(node: node, field: field)))
            i = j + 2
        }
        return found
    }

    /// Every reference inside `value`, in reading order.
    public static func references(in value: JSON) -> [Reference] {
        var found: [Reference] = []
        walkStrings(value) { s in found += matches(in: s).map(\.reference) }
        return found
    }

    /// `value` with every template replaced. A string that is exactly one template takes the referenced value
    /// as it is (a number stays a number); a template inside longer text is spliced in as text. `lookup` returns
    /// nil for an unknown reference, which resolves to an empty string.
    public static func resolve(_ value: JSON, _ lookup: (Reference) -> JSON?) -> JSON {
        switch value {
        case let .string(s):
            guard hasTemplateStart(s) else { return value }
            let found = matches(in: s)
            guard !found.isEmpty else { return value }
            let bytes = Array(s.utf8)
            let blank = { (r: Range<Int>) in bytes[r].allSatisfy { $0 == 32 || ($0 >= 9 && $0 <= 13) } }
            if found.count == 1, blank(0..<found[0].range.lowerBound), blank(found[0].range.upperBound..<bytes.count) {
                return lookup(found[0].reference) ?? .string("")
            }
            var out: [UInt8] = []
            var at = 0
            for m in found {
                out += bytes[at..<m.range.lowerBound]
                out += Array((lookup(m.reference)?.templateText ?? "").utf8)
                at = m.range.upperBound
            }
            out += bytes[at...]
            return .string(String(decoding: out, as: UTF8.self))
        case let .array(items):
            return .array(items.map { resolve($0, lookup) })
        case let .object(object):
            var out = JSONObject()
            for (k, v) in object { out[k] = resolve(v, lookup) }
            return .object(out)
        default:
            return value
        }
    }

    /// True when `s` holds "{{" (a byte scan: Foundation's `contains` showed in the instant-run profile).
    static func hasTemplateStart(_ s: String) -> Bool {
        var previous: UInt8 = 0
        for b in s.utf8 {
            if b == 123 && previous == 123 { return true }
            previous = b
        }
        return false
    }

    private static func walkStrings(_ value: JSON, _ visit: (String) -> Void) {
        switch value {
        case let .string(s): if hasTemplateStart(s) { visit(s) }
        case let .array(items): items.forEach { walkStrings($0, visit) }
        case let .object(object): object.forEach { walkStrings($0.value, visit) }
        default: break
        }
    }
}

/// A pipeline node ready to run: its identity, its stored inputs, and the nodes it waits for.
public struct GraphNode: Sendable {
    public var id: String
    public var name: String
    public var type: String
    public var inputs: JSONObject
    /// Output field names the node declares (its JSON `outputs` list), `complete` excluded.
    public var declaredOutputs: [String]
    /// Ids of the nodes whose outputs this node's templates (or `dependencies`) name.
    public var dependencies: [String]
}

/// A checked node graph in dependency order (SPEC §6). Building it rejects, with ``APIError/Kind/unprocessable``
/// naming the culprit, a template that names a missing node and a cycle.
public struct PipelineGraph: Sendable {
    /// Nodes in an order where every node comes after all its dependencies (stable: document order otherwise).
    public var nodes: [GraphNode]

    /// Checks and orders `nodes` (node id → node JSON, API.md §6). `overrides` (`node_input_overrides`, keyed
    /// by node id or name) replace stored inputs for this run only.
    public init(nodes document: JSONObject, overrides: JSONObject = [:]) throws(APIError) {
        var byName: [String: String] = [:]
        var parsed: [GraphNode] = []
        for (key, value) in document {
            guard let node = value.objectValue, let type = node["type"]?.stringValue else {
                throw APIError(.badRequest, "node '\(key)' has no type")
            }
            let id = node["id"]?.stringValue ?? key
            let name = node["name"]?.stringValue ?? id
            var inputs = node["inputs"]?.objectValue ?? [:]
            if let override = overrides[id]?.objectValue ?? overrides[name]?.objectValue {
                for (k, v) in override { inputs[k] = v }
            }
            let declared = (node["outputs"]?.arrayValue ?? []).compactMap(\.stringValue).filter { $0 != "complete" }
            parsed.append(GraphNode(id: id, name: name, type: type, inputs: inputs, declaredOutputs: declared, dependencies: []))
            byName[name] = byName[name] ?? id
        }
        let ids = Set(parsed.map(\.id))
        for i in parsed.indices {
            var deps: [String] = []
            for reference in Templates.references(in: .object(parsed[i].inputs)) {
                guard let target = ids.contains(reference.node) ? reference.node : byName[reference.node] else {
                    throw APIError(.unprocessable,
                                   "node '\(parsed[i].id)' references missing node '\(reference.node)' in {{ \(reference.node).\(reference.field) }}")
                }
                if target == parsed[i].id {
                    throw APIError(.unprocessable, "pipeline has a cycle: node '\(target)' references itself")
                }
                if !deps.contains(target) { deps.append(target) }
            }
            parsed[i].dependencies = deps
        }
        // Kahn's algorithm, taking ready nodes in document order.
        var remaining = parsed
        var done: Set<String> = []
        var ordered: [GraphNode] = []
        while !remaining.isEmpty {
            guard let next = remaining.firstIndex(where: { $0.dependencies.allSatisfy(done.contains) }) else {
                let names = remaining.map(\.id).sorted().joined(separator: ", ")
                throw APIError(.unprocessable, "pipeline has a cycle through nodes: \(names)")
            }
            let node = remaining.remove(at: next)
            done.insert(node.id)
            ordered.append(node)
        }
        nodes = ordered
        nameToID = byName
        self.ids = ids
    }

    /// Node name → id, for templates written with names.
    public var nameToID: [String: String]
    private var ids: Set<String>

    /// The node id a template reference means: the id itself, else the node with that name.
    public func nodeID(for reference: String) -> String {
        ids.contains(reference) ? reference : (nameToID[reference] ?? reference)
    }
}
