import CMicroHTTPD
import Foundation
import Glibc
import Synchronization

/// A response body produced over time, e.g. Server-Sent Events. The responder writes from any thread; the
/// transport sends each write as soon as libmicrohttpd can (chunked encoding), parking the connection with
/// suspend/resume while there is nothing to send, so an idle stream costs no thread and no CPU (TECH-NOTES §3,
/// P5). Writes that pile up while the connection is busy go out together in one write.
///
/// The body ends with ``finish()`` (the chunked terminator follows), or when the client goes away: then
/// ``isClosed`` turns true and the `onClose` handlers run once, on a transport thread.
public final class StreamBody: Sendable {
    struct State {
        var pending: [UInt8] = []
        /// Bytes of `pending` already handed to libmicrohttpd (compacted now and then, not per read).
        var offset = 0
        var finished = false
        /// Ends with a dropped connection instead of the chunked terminator (``breakOff(with:)``).
        var brokenOff = false
        var aborted = false
        var suspended = false
        var closed = false
        var connection: ConnectionHandle?
        var onClose: [@Sendable () -> Void] = []
        /// Stops the hangup watch; run on release.
        var unwatch: (@Sendable () -> Void)?
        /// The connection's socket, for shutting it down when the client is gone.
        var fd: Int32 = -1
        /// Set by ``capture(_:)``: the body is read in-process, never sent.
        var sink: (@Sendable ([UInt8], Bool) -> Void)?
    }

    let state = Mutex(State())
    /// Most bytes waiting for a client that does not read; past it the client is cut off (no unbounded memory).
    let maxPending: Int

    /// - Parameter maxPending: bytes queued for a slow client before its connection is closed (default 8 MiB).
    public init(maxPending: Int = 8 * 1024 * 1024) { self.maxPending = maxPending }

    /// Queues `bytes` for sending. Ignored after ``finish()`` or once the client is gone.
    public func write(_ bytes: [UInt8]) {
        write { $0.append(contentsOf: bytes) }
    }

    /// Queues what `fill` appends to the buffer it is given (the bytes waiting to be sent), under the body's
    /// lock: the hot path of a token event, written in place without a buffer of its own (issue 14 item 2).
    /// `fill` must only append, and quickly. Not called after ``finish()`` or once the client is gone.
    public func write(_ fill: (inout [UInt8]) -> Void) {
        state.withLock { st in
            guard !st.finished, !st.closed, !st.aborted else { return }
            if let sink = st.sink {
                var bytes: [UInt8] = []
                fill(&bytes)
                return sink(bytes, false)
            }
            fill(&st.pending)
            if st.pending.count - st.offset > maxPending {
                cut(&st)  // a client this far behind is not reading: drop it rather than buffer without end
                return
            }
            wake(&st)
        }
    }

    /// Queues `bytes` (may be empty) as the last data and ends the body.
    public func finish(with bytes: [UInt8] = []) {
        let captured = state.withLock { st -> Bool in
            guard !st.finished, !st.closed else { return false }
            if let sink = st.sink {
                st.finished = true
                sink(bytes, true)
                return true
            }
            st.pending.append(contentsOf: bytes)
            st.finished = true
            wake(&st)
            return false
        }
        if captured { released() }
    }

    /// Reads the body in-process instead of sending it, for a response no transport will send (record mode's
    /// shadow answers, issue 15 item 4): from now on `sink` gets each write as it is made (`finished` false), then
    /// the last bytes once with `finished` true (``finish(with:)`` and ``breakOff(with:)``); after that the body
    /// counts as sent and released (``isClosed``, `onClose` handlers run). Bytes written before are handed over at
    /// once. `sink` runs under the body's lock, in write order: keep it short (append and return).
    public func capture(_ sink: @escaping @Sendable (_ bytes: [UInt8], _ finished: Bool) -> Void) {
        let finishedAlready = state.withLock { st -> Bool in
            st.sink = sink
            let pending = Array(st.pending[st.offset...])
            st.pending = []
            st.offset = 0
            if !pending.isEmpty || st.finished { sink(pending, st.finished) }
            return st.finished
        }
        if finishedAlready { released() }
    }

    /// Queues `bytes` (may be empty) as the last data, then drops the connection instead of ending the body: the
    /// client gets those bytes and then a connection closed without the chunked terminator, as when the network
    /// fails mid-stream (an injected fault). The `onClose` handlers run as for a client that went away.
    public func breakOff(with bytes: [UInt8] = []) {
        let captured = state.withLock { st -> Bool in
            guard !st.finished, !st.closed, !st.aborted else { return false }
            st.finished = true
            if let sink = st.sink {
                sink(bytes, true)
                return true
            }
            st.pending.append(contentsOf: bytes)
            st.brokenOff = true
            wake(&st)
            return false
        }
        if captured { released() }
    }

    /// True once the transport released the connection (finished and sent, or the client went away).
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Runs `handler` once when the connection is released (at once if it already was).
    public func onClose(_ handler: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { st -> Bool in
            if st.closed { return true }
            st.onClose.append(handler)
            return false
        }
        if runNow { handler() }
    }

    // MARK: Transport side

    /// Resumes the parked connection so libmicrohttpd asks for data again. Call under the lock.
    private func wake(_ st: inout State) {
        if st.suspended, let connection = st.connection {
            st.suspended = false
            // never twice: guarded by `suspended` under the lock (TECH-NOTES P7); inside a scheduler batch the
            // resume waits for the batch's end (ResumeBatch)
            if !ResumeBatch.hold(connection.pointer) { MHD_resume_connection(connection.pointer) }
        }
    }

    /// The client hung up (seen by the hangup watcher): make the next read fail so libmicrohttpd closes.
    func abort() {
        state.withLock { cut(&$0) }
    }

    /// Ends the stream now: the next read fails, and the socket is shut down so that libmicrohttpd, which may be
    /// waiting for a full socket to drain (a client that does not read), sees an error at once. Under the lock
    /// and before release, `fd` is still this connection's (libmicrohttpd frees the response first).
    private func cut(_ st: inout State) {
        st.aborted = true
        st.pending = []
        st.offset = 0
        if st.connection != nil && st.fd >= 0 { _ = Glibc.shutdown(st.fd, Int32(SHUT_RDWR)) }
        wake(&st)
    }

    func attach(_ connection: OpaquePointer, fd: Int32, unwatch: (@Sendable () -> Void)?) {
        let handle = ConnectionHandle(pointer: connection)
        state.withLock {
            $0.connection = handle
            $0.fd = fd
            $0.unwatch = unwatch
        }
    }

    /// libmicrohttpd's content reader: copies what is pending, ends the stream, or parks the connection.
    func read(into buffer: UnsafeMutablePointer<CChar>, max: Int) -> Int {
        state.withLock { st in
            if st.aborted { return Int(MHD_CONTENT_READER_END_WITH_ERROR) }
            let available = st.pending.count - st.offset
            if available > 0 {
                let n = min(max, available)
                st.pending.withUnsafeBufferPointer { source in
                    UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + st.offset, byteCount: n)
                }
                st.offset += n
                if st.offset == st.pending.count {
                    st.pending.removeAll(keepingCapacity: st.pending.capacity <= 64 * 1024)
                    st.offset = 0
                } else if st.offset > 1 << 20 && st.offset * 2 > st.pending.count {
                    st.pending.removeFirst(st.offset)  // compact now and then, not on every read
                    st.offset = 0
                }
                return n
            }
            if st.finished && st.brokenOff {
                st.aborted = true  // wound up on release like a client that went away
                return Int(MHD_CONTENT_READER_END_WITH_ERROR)
            }
            if st.finished { return Int(MHD_CONTENT_READER_END_OF_STREAM) }
            guard let connection = st.connection else { return Int(MHD_CONTENT_READER_END_WITH_ERROR) }
            st.suspended = true
            MHD_suspend_connection(connection.pointer)  // allowed inside the content reader; returning 0 unsuspended would spin (P5)
            return 0
        }
    }

    /// The response was destroyed: the connection pointer is dead from now on.
    ///
    /// If the client had gone away, its connection is wound up here: libmicrohttpd 0.9.75 (epoll) loses the
    /// hang-up of a suspended connection and, measured beside an idle keep-alive connection, kept such
    /// connections counted and unreleased until the neighbour's timeout (minutes). Shutting the socket down and
    /// giving the connection a 1 s timeout makes the worker close and free it within a second. Both are safe
    /// here: libmicrohttpd frees the response before it closes the socket and frees the connection.
    func released() {
        let handlers = state.withLock { st -> [@Sendable () -> Void] in
            if st.aborted, let connection = st.connection {
                if st.fd >= 0 { _ = Glibc.shutdown(st.fd, Int32(SHUT_RDWR)) }
                cmhd_set_connection_timeout(connection.pointer, 1)
            }
            st.closed = true
            st.connection = nil
            st.fd = -1
            st.suspended = false
            let h = st.onClose + (st.unwatch.map { [$0] } ?? [])
            st.onClose = []
            st.unwatch = nil
            return h
        }
        for handler in handlers { handler() }
    }
}

/// An `MHD_Connection *`, valid until the response is released; only used under ``StreamBody``'s lock.
struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

let streamReleased: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let unmanaged = Unmanaged<StreamBody>.fromOpaque(cls)
    unmanaged.takeUnretainedValue().released()
    unmanaged.release()  // balances passRetained in HTTPServer.queue(_:on:)
}

let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return Int(MHD_CONTENT_READER_END_WITH_ERROR) }
    return Unmanaged<StreamBody>.fromOpaque(cls).takeUnretainedValue().read(into: buffer, max: max)
}

/// Watches the sockets of streaming connections for a client hang-up. libmicrohttpd does not notice one on a
/// suspended connection (TECH-NOTES P7), so a stream parked between tokens would otherwise hold its socket
/// until the run ends. One thread, one epoll set, `EPOLLRDHUP`: detection is immediate and costs nothing while
/// clients stay connected.
final class HangupWatcher: @unchecked Sendable {
    // @unchecked: `epollFD` is fixed after init; `watched` is under its mutex.
    private let epollFD: Int32
    private let watched = Mutex<[UInt64: (fd: Int32, stream: StreamBody)]>([:])
    private let nextToken = Atomic<UInt64>(1)

    init() {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        let thread = Thread { [self] in self.loop() }
        thread.name = "mockshift-hangups"
        thread.start()
    }

    /// Starts watching `fd` for `stream`; returns a token for ``unwatch(_:)``.
    func watch(fd: Int32, stream: StreamBody) -> UInt64 {
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
        watched.withLock { $0[token] = (fd, stream) }
        var event = epoll_event()
        event.events = EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        event.data.u64 = token
        if epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) != 0 {
            watched.withLock { _ = $0.removeValue(forKey: token) }
        }
        return token
    }

    /// Stops watching (the connection is being released). The descriptor may already be closed: harmless.
    func unwatch(_ token: UInt64) {
        guard let entry = watched.withLock({ $0.removeValue(forKey: token) }) else { return }
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, entry.fd, nil)
    }

    var count: Int { watched.withLock { $0.count } }

    /// Ends every watched stream (server shutdown).
    func abortAll() {
        for entry in watched.withLock({ Array($0.values) }) { entry.stream.abort() }
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let n = epoll_wait(epollFD, &events, Int32(events.count), -1)
            if n < 0 { if errno == EINTR { continue } else { return } }
            for i in 0..<Int(n) {
                let token = events[i].data.u64
                guard let entry = watched.withLock({ $0.removeValue(forKey: token) }) else { continue }
                _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, entry.fd, nil)
                entry.stream.abort()
            }
        }
    }
}
