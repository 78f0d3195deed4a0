import CMicroHTTPD
import CWslay
import Dispatch
import Foundation
import Glibc
import Logging
import Synchronization

/// The one thread that serves every upgraded socket (TECH-NOTES "WebSocket on libmicrohttpd 0.9.75 + wslay
/// 1.1.1"). libmicrohttpd stops polling a socket once it is upgraded; from then on it is ours: non-blocking, in
/// this loop's epoll set, framed by a wslay event context (unmasking, fragment reassembly, UTF-8 validation of
/// text, PING answered with PONG, Close answered with Close, all wslay's). An `eventfd` in the same set wakes
/// the thread when another thread queued something (``WebSocket/send(text:)``, a new socket, shutdown), since a
/// wslay context is not thread-safe and is only touched here. Thousands of idle sockets cost no thread.
///
/// A socket ends when wslay wants neither to read nor to write (both Close frames passed, or an error closed
/// it), when its closing handshake outlives ``WebSocketLimits/closeGraceSeconds``, or at shutdown. Its
/// descriptor then goes back to libmicrohttpd (`MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE)`), which
/// closes it; never `close()` here.
final class WebSocketLoop: @unchecked Sendable {
    // @unchecked: `epollFD`/`wakeFD` are fixed after init; `sockets`, `closing` and `closingAll` belong to the
    // loop thread; everything other threads touch is in `inbox` (a mutex) or atomics.
    private let epollFD: Int32
    private let wakeFD: Int32
    private let logger: Logger
    private let limits: WebSocketLimits

    struct Inbox {
        var added: [WebSocket] = []
        var scheduled: [WebSocket] = []
        var closeAll: (code: UInt16, reason: String, graceSeconds: Double)?
        var forceAll = false
        var stop = false
    }
    private let inbox = Mutex(Inbox())
    private let stopped = Atomic<Bool>(false)
    private let nextID = Atomic<UInt64>(1)
    /// Open upgraded sockets (registered or about to be), for `/_mock/stats`.
    let openCount = Atomic<Int>(0)
    /// Of those, the ones whose closing handshake has begun.
    let closingCount = Atomic<Int>(0)

    // Loop thread only.
    private var sockets: [UInt64: WebSocket] = [:]
    private var closing: Set<UInt64> = []
    private var closingAll: (code: UInt16, reason: String, deadline: UInt64)?

    init(limits: WebSocketLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = 0  // socket ids start at 1
        _ = epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
        let thread = Thread { [self] in self.run() }
        thread.name = "mockshift-websockets"
        thread.start()
    }

    // MARK: Called from other threads

    /// Takes over an upgraded socket (called by libmicrohttpd's upgrade callback, on one of its threads).
    /// `extraIn`: bytes libmicrohttpd read past the request head; wslay gets them before anything from the socket.
    func add(fd: Int32, upgradeHandle: OpaquePointer, extraIn: [UInt8], handler: any WebSocketHandler) {
        let socket = WebSocket(id: nextID.wrappingAdd(1, ordering: .relaxed).oldValue, fd: fd,
                               upgradeHandle: upgradeHandle, extraIn: extraIn, handler: handler, limits: limits,
                               loop: self)
        openCount.add(1, ordering: .relaxed)
        socket.deliverOpen()  // queued before the loop can read anything: the handler hears of the socket first
        inbox.withLock { $0.added.append(socket) }
        wake()
    }

    /// `socket` has messages or a Close to hand to wslay (called under the socket's own lock).
    func markScheduled(_ socket: WebSocket) {
        inbox.withLock { $0.scheduled.append(socket) }
    }

    /// Wakes the loop thread (the eventfd). Harmless once the loop has stopped.
    func wake() {
        if stopped.load(ordering: .acquiring) { return }
        _ = eventfd_write(wakeFD, 1)
    }

    /// Starts the closing handshake of every open socket, and of any upgraded from now on: Close `code` with
    /// `reason`, each socket ending when its client answers or after `graceSeconds`. Returns at once.
    func beginClosingAll(code: UInt16, reason: String, graceSeconds: Double) {
        inbox.withLock { $0.closeAll = (code, reason, graceSeconds) }
        wake()
    }

    /// Closes every socket and stops the thread: ``beginClosingAll(code:reason:graceSeconds:)`` unless begun,
    /// waits until each socket ended or `seconds` passed, then drops what is left. Blocks up to about `seconds`
    /// plus a tenth of a second.
    func shutdown(code: UInt16, reason: String, waitingAtMost seconds: Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(max(0, seconds) * 1e9)
        beginClosingAll(code: code, reason: reason, graceSeconds: seconds)
        while openCount.load(ordering: .relaxed) > 0 && DispatchTime.now().uptimeNanoseconds < deadline { usleep(2_000) }
        inbox.withLock {
            $0.forceAll = true
            $0.stop = true
        }
        wake()
        let hardDeadline = DispatchTime.now().uptimeNanoseconds + 100_000_000
        while !stopped.load(ordering: .acquiring) && DispatchTime.now().uptimeNanoseconds < hardDeadline { usleep(1_000) }
    }

    // MARK: The loop thread

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while true {
            let n = epoll_wait(epollFD, &events, Int32(events.count), nextTimeoutMilliseconds())
            if n < 0 && errno != EINTR {
                logger.error("websocket loop: epoll_wait failed (errno \(errno)); dropping every socket")
                for socket in Array(sockets.values) { finish(socket) }
                stopped.store(true, ordering: .releasing)
                return
            }
            for i in 0..<max(0, Int(n)) {
                let id = events[i].data.u64
                if id == 0 {
                    var value: eventfd_t = 0
                    _ = eventfd_read(wakeFD, &value)
                    continue
                }
                guard let socket = sockets[id] else { continue }
                handle(socket, events: events[i].events)
            }
            if processInbox() { break }
            expireDeadlines()
        }
        stopped.store(true, ordering: .releasing)
        // The descriptors stay open: a handler may still call send() and wake(), which must never write to a
        // descriptor number reused by someone else. Two per server, for the life of the process.
    }

    /// Takes what other threads queued. Returns true when the thread should end.
    private func processInbox() -> Bool {
        let work = inbox.withLock { box -> Inbox in
            let work = box
            box.added = []
            box.scheduled = []
            box.closeAll = nil
            box.forceAll = false
            return work
        }
        for socket in work.added { register(socket) }
        if let request = work.closeAll {
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, request.graceSeconds) * 1e9)
            closingAll = (request.code, request.reason, deadline)
            for socket in Array(sockets.values) { close(socket, code: request.code, reason: request.reason, deadline: deadline) }
        }
        for socket in work.scheduled { flush(socket) }
        if work.forceAll { for socket in Array(sockets.values) { finish(socket) } }
        return work.stop && sockets.isEmpty
    }

    /// Sets up wslay for a new socket, feeds it the bytes libmicrohttpd read ahead, and starts watching it.
    private func register(_ socket: WebSocket) {
        let flags = fcntl(socket.fd, F_GETFL)
        _ = fcntl(socket.fd, F_SETFL, flags | O_NONBLOCK)
        var callbacks = wslay_event_callbacks(
            recv_callback: wslayRecv, send_callback: wslaySend, genmask_callback: nil,
            on_frame_recv_start_callback: nil, on_frame_recv_chunk_callback: nil, on_frame_recv_end_callback: nil,
            on_msg_recv_callback: wslayMessage)
        let retained = Unmanaged.passRetained(socket)  // wslay's user data; released in finish(), after wslay_event_context_free
        var context: OpaquePointer?
        guard wslay_event_context_server_init(&context, &callbacks, retained.toOpaque()) == 0, let context else {
            retained.release()  // balances the passRetained above: wslay never got it
            logger.error("websocket \(socket.id): wslay could not start (out of memory); dropping it")
            release(socket, code: 1011)
            return
        }
        wslay_event_config_set_max_recv_msg_length(context, UInt64(limits.maxMessageBytes))
        socket.context = context
        socket.retained = retained
        sockets[socket.id] = socket
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = socket.id
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, socket.fd, &event) == 0 else {
            logger.error("websocket \(socket.id): epoll_ctl failed (errno \(errno)); dropping it")
            finish(socket, watched: false)
            return
        }
        socket.interest = EPOLLIN.rawValue
        if let closingAll {  // the daemon is shutting down: this one closes at once too
            close(socket, code: closingAll.code, reason: closingAll.reason, deadline: closingAll.deadline)
            return
        }
        // A client may send its first frames right behind the handshake, then wait for an answer: read what
        // libmicrohttpd already took from the socket now, the socket itself may never become readable again.
        if !socket.extraIn.isEmpty, wslay_event_recv(context) != 0 { return finish(socket) }
        service(socket)
    }

    /// Socket readiness: read (wslay calls back with whole messages), then write and update the interest.
    private func handle(_ socket: WebSocket, events: UInt32) {
        guard let context = socket.context else { return }
        let readable = events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
        let hangup = events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
        if socket.outgoing.withLock({ $0.readPaused }) || socket.closeHeld {
            // Neither reading (the handler is behind) nor writing (the Close answer waits for the handler) for
            // now; a hang-up would still be reported, again and again: the client is gone, end it.
            if hangup { return finish(socket) }
        } else if readable && wslay_event_want_read(context) != 0 {
            if wslay_event_recv(context) != 0 { return finish(socket) }  // the client went away, or a read failed
        }
        service(socket)
    }

    /// Hands queued messages and a requested Close to wslay, then writes.
    private func flush(_ socket: WebSocket) {
        let (messages, close) = socket.outgoing.withLock { st -> ([[UInt8]], (code: UInt16, reason: [UInt8])?) in
            st.scheduled = false
            if st.closeReleased { socket.closeHeld = false }
            let messages = st.messages
            st.messages = []
            st.inWslay += st.messageBytes
            st.messageBytes = 0
            let close = st.closeRequest
            st.closeRequest = nil
            return (messages, close)
        }
        guard let context = socket.context else { return }
        for message in messages {
            message.withUnsafeBufferPointer { bytes in
                var msg = wslay_event_msg(opcode: CWSLAY_TEXT_FRAME, msg: bytes.baseAddress, msg_length: bytes.count)
                _ = wslay_event_queue_msg(context, &msg)  // fails only once a Close was queued: then nothing more goes out anyway
            }
        }
        if let close {
            queueClose(socket, context, code: close.code, reason: close.reason)
            beginClosing(socket, deadline: graceDeadline())
        }
        service(socket)
    }

    /// Writes what wslay holds, notices the closing handshake, ends a socket wslay is done with, and keeps the
    /// epoll interest equal to what wslay wants.
    private func service(_ socket: WebSocket) {
        guard let context = socket.context else { return }
        if !socket.closeHeld && wslay_event_want_write(context) != 0 && wslay_event_send(context) != 0 {
            return finish(socket)
        }
        let queued = wslay_event_get_queued_msg_length(context)
        socket.outgoing.withLock { $0.inWslay = queued }
        let wantRead = wslay_event_want_read(context) != 0, wantWrite = wslay_event_want_write(context) != 0
        if !wantRead && !wantWrite { return finish(socket) }
        // Reading stops when a Close came in (wslay queued the answer) or wslay closed on an error (1002, 1007,
        // 1009): the handshake has begun, bounded like our own.
        if !wantRead { beginClosing(socket, deadline: graceDeadline()) }
        let paused = socket.outgoing.withLock { $0.readPaused }
        let interest = (wantRead && !paused ? EPOLLIN.rawValue : 0) | (wantWrite && !socket.closeHeld ? EPOLLOUT.rawValue : 0)
        if interest != socket.interest {
            var event = epoll_event()
            event.events = interest
            event.data.u64 = socket.id
            _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, socket.fd, &event)
            socket.interest = interest
        }
    }

    /// A complete message from wslay (called inside `wslay_event_recv`, on this thread).
    func received(_ socket: WebSocket, opcode: UInt8, bytes: UnsafeBufferPointer<UInt8>) {
        guard let context = socket.context else { return }
        switch opcode {
        case CWSLAY_TEXT_FRAME:
            // After a Close, data is dropped (RFC 6455 §5.5.1). wslay checked the UTF-8 (1007 otherwise).
            if closing.contains(socket.id) || !socket.isOpen { return }
            socket.outgoing.withLock { st in
                st.inbound += bytes.count
                if st.inbound > limits.maxInboundBacklogBytes { st.readPaused = true }  // service() drops EPOLLIN
            }
            socket.deliver(text: String(decoding: bytes, as: UTF8.self), size: bytes.count)
        case CWSLAY_BINARY_FRAME:
            if closing.contains(socket.id) || !socket.isOpen { return }
            socket.outgoing.withLock { $0.closing = true }
            queueClose(socket, context, code: 1003, reason: Array("binary frames are not accepted: send JSON text".utf8))
            beginClosing(socket, deadline: graceDeadline())
        case CWSLAY_CONNECTION_CLOSE:
            // wslay queued the answer; it goes out once the handler has handled what came before the Close.
            socket.closeHeld = true
            socket.releaseCloseAfterPendingMessages()
        default:
            break  // PING, PONG: wslay answered what needs an answer
        }
    }

    private func close(_ socket: WebSocket, code: UInt16, reason: String, deadline: UInt64) {
        guard let context = socket.context else { return }
        socket.outgoing.withLock {
            $0.closing = true
            $0.closeRequest = nil
        }
        queueClose(socket, context, code: code, reason: Array(reason.utf8.prefix(123)))
        beginClosing(socket, deadline: deadline)
        service(socket)
    }

    private func queueClose(_ socket: WebSocket, _ context: OpaquePointer, code: UInt16, reason: [UInt8]) {
        // WSLAY_ERR_NO_MORE_MSG when a Close is already queued or sent: the first one stands.
        _ = reason.withUnsafeBufferPointer { wslay_event_queue_close(context, code, $0.baseAddress, $0.count) }
    }

    private func graceDeadline() -> UInt64 {
        DispatchTime.now().uptimeNanoseconds + UInt64(limits.closeGraceSeconds * 1e9)
    }

    /// The closing handshake has begun: no more sends, and a deadline (the earlier one stands).
    private func beginClosing(_ socket: WebSocket, deadline: UInt64) {
        socket.outgoing.withLock { $0.closing = true }
        if let current = socket.closeDeadline, current <= deadline { return }
        if socket.closeDeadline == nil {
            closing.insert(socket.id)
            closingCount.add(1, ordering: .relaxed)
        }
        socket.closeDeadline = deadline
    }

    private func nextTimeoutMilliseconds() -> Int32 {
        var earliest: UInt64?
        for id in closing { if let d = sockets[id]?.closeDeadline { earliest = min(earliest ?? d, d) } }
        guard let earliest else { return -1 }
        let now = DispatchTime.now().uptimeNanoseconds
        return earliest <= now ? 0 : Int32(min((earliest - now) / 1_000_000 + 1, 60_000))
    }

    private func expireDeadlines() {
        guard !closing.isEmpty else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        for id in closing {
            if let socket = sockets[id], let deadline = socket.closeDeadline, deadline <= now { finish(socket) }
        }
    }

    /// Ends a socket: stops watching it, tells wslay and libmicrohttpd, then the handler.
    private func finish(_ socket: WebSocket, watched: Bool = true) {
        guard let context = socket.context else { return }
        if watched { _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, socket.fd, nil) }
        let code: UInt16 = wslay_event_get_close_received(context) != 0 ? wslay_event_get_status_code_received(context)
            : wslay_event_get_close_sent(context) != 0 ? wslay_event_get_status_code_sent(context) : 1006
        // What the client still sends is read and dropped before the descriptor closes: closing with unread
        // input makes the kernel send a reset, which can discard our Close frame at the client.
        _ = Glibc.shutdown(socket.fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        for _ in 0..<16 where Glibc.recv(socket.fd, &scratch, scratch.count, Int32(MSG_DONTWAIT)) > 0 {}
        wslay_event_context_free(context)
        socket.context = nil
        socket.retained?.release()  // balances passRetained in register()
        socket.retained = nil
        sockets.removeValue(forKey: socket.id)
        if closing.remove(socket.id) != nil { closingCount.subtract(1, ordering: .relaxed) }
        release(socket, code: code)
    }

    /// Gives the descriptor back to libmicrohttpd and tells the handler (the socket is no longer watched).
    private func release(_ socket: WebSocket, code: UInt16) {
        socket.outgoing.withLock {
            $0.closing = true
            $0.messages = []
            $0.messageBytes = 0
            $0.inWslay = 0
        }
        _ = cmhd_upgrade_close(socket.upgradeHandle)  // libmicrohttpd closes the socket and completes the request
        openCount.subtract(1, ordering: .relaxed)
        logger.debug("websocket \(socket.id) closed (\(code))")
        socket.deliverClose(code: code)
    }
}

// MARK: wslay callbacks (C function pointers; the user data is the socket, retained in register())

private func socket(_ userData: UnsafeMutableRawPointer?) -> WebSocket {
    Unmanaged<WebSocket>.fromOpaque(userData!).takeUnretainedValue()
}

/// wslay reads: first the bytes libmicrohttpd read ahead, then the socket. `WSLAY_ERR_WOULDBLOCK` when nothing
/// is there; a failure on end of stream or an error (wslay then closes with 1006 and we end the socket).
let wslayRecv: wslay_event_recv_callback = { context, buffer, length, _, userData in
    let ws = socket(userData)
    guard let buffer else { return -1 }
    if ws.extraOffset < ws.extraIn.count {
        let n = min(length, ws.extraIn.count - ws.extraOffset)
        ws.extraIn.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress! + ws.extraOffset, count: n) }
        ws.extraOffset += n
        if ws.extraOffset == ws.extraIn.count {
            ws.extraIn = []
            ws.extraOffset = 0
        }
        return n
    }
    while true {
        let n = Glibc.recv(ws.fd, buffer, length, 0)
        if n > 0 { return n }
        if n < 0 && errno == EINTR { continue }
        let wouldBlock = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        wslay_event_set_error(context, wouldBlock ? WSLAY_ERR_WOULDBLOCK.rawValue : WSLAY_ERR_CALLBACK_FAILURE.rawValue)
        return -1
    }
}

/// wslay writes to the socket (never raising SIGPIPE). `WSLAY_ERR_WOULDBLOCK` when the socket is full.
let wslaySend: wslay_event_send_callback = { context, data, length, flags, userData in
    let ws = socket(userData)
    var sendFlags = Int32(MSG_NOSIGNAL)
    if flags & Int32(WSLAY_MSG_MORE.rawValue) != 0 { sendFlags |= Int32(MSG_MORE) }
    while true {
        let n = Glibc.send(ws.fd, data, length, sendFlags)
        if n >= 0 { return n }
        if errno == EINTR { continue }
        let wouldBlock = errno == EAGAIN || errno == EWOULDBLOCK
        wslay_event_set_error(context, wouldBlock ? WSLAY_ERR_WOULDBLOCK.rawValue : WSLAY_ERR_CALLBACK_FAILURE.rawValue)
        return -1
    }
}

/// One complete message (or control frame) from wslay.
let wslayMessage: wslay_event_on_msg_recv_callback = { _, argument, userData in
    guard let argument else { return }
    let ws = socket(userData)
    let bytes = UnsafeBufferPointer(start: argument.pointee.msg, count: argument.pointee.msg_length)
    ws.loop.received(ws, opcode: argument.pointee.opcode, bytes: bytes)
}
