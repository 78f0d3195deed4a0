import Foundation
import Logging
import MockShift
import MockShiftHTTP
import Synchronization

/// The responder of the socket while the daemon is still opening its database (issue 11 item 3): the port is
/// bound before the first database write, so that a daemon that cannot listen never touches the file, and
/// requests that arrive in that short window get 503 `{"status":"failed","error":"server starting"}` (like
/// `/_mock/ready`). ``serve(with:)`` hands every later request to the application.
final class StartingResponder: HTTPResponder {
    private let target = Mutex<(any HTTPResponder)?>(nil)
    private let starting = MockShiftApp.render(APIError(.unavailable, "server starting"))

    /// From now on, requests go to `responder`.
    func serve(with responder: any HTTPResponder) {
        target.withLock { $0 = responder }
    }

    func respond(to request: Request, writer: ResponseWriter) {
        guard let responder = target.withLock({ $0 }) else { return writer.send(starting) }
        responder.respond(to: request, writer: writer)
    }
}

/// Ends a daemon whose starter has gone (issue 11 item 5), through the same path as `kill -TERM`: each watch
/// sends SIGTERM to this process, which the main thread's `sigwait` receives, so runs are marked, streams get
/// their final event and the database is committed as on any clean stop.
///
/// Two watches, for two ways a starter can go:
/// - ``watchParent(logger:)`` polls `getppid()` every 100 ms: once the parent process has exited, the kernel
///   has given us a new parent (init or a subreaper), however the old one died (`kill -9` included). Linux's
///   `prctl(PR_SET_PDEATHSIG)` was not used: it fires when the parent *thread* that forked us exits, which
///   kills a daemon started from a short-lived helper thread of a live process.
/// - ``watchStandardInput(logger:)`` reads standard input until end of file: a starter that passes a pipe
///   (`subprocess.PIPE`) and never writes holds its only write end, and the kernel closes it when the starter
///   ends. This also covers a starter that died before ``watchParent(logger:)`` could read its pid.
/// Both must be started after SIGTERM is blocked, so that only `sigwait` receives it.
enum StarterWatch {
    /// Sends SIGTERM to this process once its parent process changes from the one it has now.
    static func watchParent(logger: Logger) {
        let parent = getppid()
        Thread.detachNewThread {
            while getppid() == parent { usleep(100_000) }
            logger.notice("parent process \(parent) is gone (--exit-with-parent): shutting down")
            kill(getpid(), SIGTERM)
        }
    }

    /// Sends SIGTERM to this process once standard input reaches end of file (or cannot be read). What is
    /// read is discarded.
    static func watchStandardInput(logger: Logger) {
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count > 0 || (count < 0 && errno == EINTR) { continue }
                break
            }
            logger.notice("standard input closed (--exit-on-stdin-close): shutting down")
            kill(getpid(), SIGTERM)
        }
    }
}
