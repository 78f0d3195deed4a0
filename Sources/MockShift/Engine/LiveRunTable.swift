/// The engine's live runs by id, with a count per namespace kept as runs come and go, so that a namespace's
/// figure (`GET /_mock/health`, `/_mock/stats`: the caller's only, issue 11 item 14) costs a lookup, not a walk
/// of every live run. Used under the engine's `live` mutex; the same calls as the dictionary it replaces.
struct LiveRunTable {
    private var byID: [String: LiveRun] = [:]
    private var perNamespace: [String: Int] = [:]

    /// The live run with `id`; setting nil removes it.
    subscript(id: String) -> LiveRun? {
        get { byID[id] }
        set {
            if let newValue { insert(newValue, id: id) } else { removeValue(forKey: id) }
        }
    }

    /// Removes the run with `id`; returns it if it was live.
    @discardableResult
    mutating func removeValue(forKey id: String) -> LiveRun? {
        guard let run = byID.removeValue(forKey: id) else { return nil }
        let namespace = run.record.namespace
        let left = (perNamespace[namespace] ?? 1) - 1
        perNamespace[namespace] = left > 0 ? left : nil
        return run
    }

    private mutating func insert(_ run: LiveRun, id: String) {
        if let old = byID.updateValue(run, forKey: id) {
            if old.record.namespace == run.record.namespace { return }
            let left = (perNamespace[old.record.namespace] ?? 1) - 1
            perNamespace[old.record.namespace] = left > 0 ? left : nil
        }
        perNamespace[run.record.namespace, default: 0] += 1
    }

    /// Every live run, in no order.
    var values: Dictionary<String, LiveRun>.Values { byID.values }

    /// Live runs, all namespaces together.
    var count: Int { byID.count }

    /// Live runs of `namespace`.
    func count(namespace: String) -> Int { perNamespace[namespace] ?? 0 }
}
