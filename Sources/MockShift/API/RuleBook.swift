import Synchronization

/// A rule kept per namespace by a ``RuleBook``: faults and scripted LLM answers.
protocol NamespacedRule: Sendable {
    var namespace: String { get }
    /// The rule as given, plus its id under ``idKey``: what listing shows.
    var json: JSONObject { get }
    /// The key of the rule's id in `json` (`fault_id`, `script_id`).
    static var idKey: String { get }
}

/// Rules per namespace, in order, with the bookkeeping faults and scripted answers share: adding a rule equal to
/// one already there (but for its id) replaces it, so seeding a fixture folder twice does not double anything;
/// listing and clearing act on one namespace.
final class RuleBook<Rule: NamespacedRule>: Sendable {
    /// Rules by namespace, each list in order: a request walks only its own namespace's rules, however many
    /// keys hold some (fixtures give every key a copy of theirs, issue 11 item 8).
    private let rules = Mutex<[String: [Rule]]>([:])

    /// Most rules one namespace may hold: every matching request walks them.
    static var limitPerNamespace: Int { 1000 }

    /// Adds `rule` at the end (or at the front, for newest-first books), replacing an equal one. Throws a 400 when
    /// the namespace already holds ``limitPerNamespace`` rules.
    func add(_ rule: Rule, atFront: Bool = false) throws {
        try rules.withLock { book throws(APIError) in
            var list = book[rule.namespace] ?? []
            list.removeAll { RuleBook.same($0.json, rule.json) }
            guard list.count < Self.limitPerNamespace else {
                throw APIError(.badRequest, "this key already holds \(Self.limitPerNamespace) rules: clear some first")
            }
            if atFront { list.insert(rule, at: 0) } else { list.append(rule) }
            book[rule.namespace] = list
        }
    }

    /// Runs `body` on the namespace's rules in order, under the book's lock (for matching that updates rules).
    func withRules<T>(namespace: String, _ body: (inout [Rule]) -> T) -> T {
        rules.withLock { book in
            guard book[namespace] != nil else {
                var none: [Rule] = []
                return body(&none)
            }
            return body(&book[namespace]!)
        }
    }

    func list(namespace: String) -> [Rule] { rules.withLock { $0[namespace] ?? [] } }

    /// Every namespace that has a rule.
    func namespaces() -> Set<String> { rules.withLock { Set($0.filter { !$0.value.isEmpty }.keys) } }

    /// Removes the namespace's rules; returns how many.
    func clear(namespace: String) -> Int {
        rules.withLock { $0.removeValue(forKey: namespace)?.count ?? 0 }
    }

    static func same(_ a: JSONObject, _ b: JSONObject) -> Bool {
        var a = a, b = b
        a[Rule.idKey] = nil
        b[Rule.idKey] = nil
        return a == b
    }
}
