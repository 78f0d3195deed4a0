import Synchronization

/// One event of a namespace's run feed (``RunEngine/subscribe(namespace:onEvent:onEnd:)``, issue 7): what a
/// run's timeline records, plus the tokens of streaming outputs as they are generated.
///
/// `json` holds `type`, `run_id`, `pipeline_id`, then the event's own fields (`node`, `status`, `mode`, `error`,
/// `result`, `outputs`, `text`, `tokens`, …) and the timestamps `clock_ms` (the scheduler's clock) and `at`
/// (wall clock, ISO 8601).
public struct RunFeedEvent: Sendable {
    public let namespace: String
    public let runID: String
    public let pipelineID: String
    /// `created`, `node_started`, `node_completed`, `node_skipped`, `first_token`, `stream`, `tokens`, `paused`,
    /// `resumed`, then `completed`, `failed` or `terminated`.
    public let type: String
    public let json: JSONObject
}

/// A subscription to a namespace's run feed; hand it back to ``RunEngine/unsubscribe(_:)``.
public struct RunFeedSubscription: Sendable, Hashable {
    let id: UInt64
}

/// The subscribers of the run feed, by namespace. Events are delivered under the run's lock, in the run's
/// order; each subscriber must be quick (format and queue) and cope with calls from several threads.
final class RunFeed: Sendable {
    struct Subscriber {
        let namespace: String
        let onEvent: @Sendable (RunFeedEvent) -> Void
        let onEnd: @Sendable () -> Void
    }

    private struct State {
        var next: UInt64 = 1
        var byNamespace: [String: [UInt64: Subscriber]] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    /// Subscribers in all namespaces: the engine checks it before collecting anything (no cost when unwatched).
    private let count = Atomic<Int>(0)

    var isWatched: Bool { count.load(ordering: .relaxed) > 0 }
    var subscriberCount: Int { count.load(ordering: .relaxed) }

    /// Subscribers of `namespace`.
    func subscriberCount(namespace: String) -> Int { state.withLock { $0.byNamespace[namespace]?.count ?? 0 } }

    /// Adds a subscriber; nil once the feed is closed (the server is shutting down).
    func subscribe(namespace: String, onEvent: @escaping @Sendable (RunFeedEvent) -> Void,
                   onEnd: @escaping @Sendable () -> Void) -> RunFeedSubscription? {
        state.withLock { st -> RunFeedSubscription? in
            guard !st.closed else { return nil }
            let id = st.next
            st.next += 1
            st.byNamespace[namespace, default: [:]][id] = Subscriber(namespace: namespace, onEvent: onEvent, onEnd: onEnd)
            count.add(1, ordering: .relaxed)
            return RunFeedSubscription(id: id)
        }
    }

    /// Removes a subscriber (its client went away). Harmless twice, or after ``close()``.
    func unsubscribe(_ subscription: RunFeedSubscription) {
        state.withLock { st in
            for (namespace, var subscribers) in st.byNamespace where subscribers[subscription.id] != nil {
                subscribers[subscription.id] = nil
                st.byNamespace[namespace] = subscribers.isEmpty ? nil : subscribers
                count.subtract(1, ordering: .relaxed)
                return
            }
        }
    }

    func subscribers(of namespace: String) -> [Subscriber] {
        state.withLock { st in st.byNamespace[namespace].map { Array($0.values) } ?? [] }
    }

    /// Ends the feed (server shutdown): every subscriber's `onEnd` runs once; nobody subscribes afterwards.
    func close() {
        let all = state.withLock { st -> [Subscriber] in
            st.closed = true
            let all = st.byNamespace.values.flatMap { $0.values }
            st.byNamespace = [:]
            count.store(0, ordering: .relaxed)
            return all
        }
        for subscriber in all { subscriber.onEnd() }
    }
}

/// What a run collected for the feed since it last delivered: timeline entries (by index) and token ticks, in
/// the order they happened.
enum FeedItem {
    case entry(Int)
    case tokens(node: String, outputs: [String], tokens: [String], clock: UInt64, atMicros: Int64)
}
