import Testing
@testable import MockShift
@testable import MockShiftHTTP

/// SSE framing and keep-alive timing (SPEC §5), on the manual clock: exact and instant.
@Suite struct EventStreamTests {
    func pending(_ stream: EventStream) -> String {
        String(decoding: stream.body.state.withLock { $0.pending }, as: UTF8.self)
    }

    func record(_ status: RunStatus = .inProgress) -> RunRecord {
        RunRecord(id: "0123456789abcdef01234567", namespace: "default", pipelineID: "p", mode: .stream, version: nil,
                  inputs: [:], status: status, result: status == .completed ? ["answer": "Hello there."] : nil,
                  error: nil, partialOutputs: nil, usage: nil, options: nil, createdAt: 0, startedAt: 0, endedAt: nil,
                  nodes: [])
    }

    @Test func eventsAreFramedWithTypeRunIdAndTaskId() {
        let stream = EventStream(scheduler: Scheduler(clock: .manual))
        stream.send(.started(record()))
        stream.send(.tokens(outputs: ["answer"], tokens: ["Hello", " \"there\"."]))
        stream.finish(record(.completed))
        let id = "0123456789abcdef01234567"
        #expect(pending(stream) == """
            event: start
            data: {"status":"in_progress","type":"start","run_id":"\(id)","task_id":"\(id)"}

            event: stream
            data: {"type":"stream","output_name":"answer","output_value":"Hello","run_id":"\(id)","task_id":"\(id)"}

            event: stream
            data: {"type":"stream","output_name":"answer","output_value":" \\"there\\".","run_id":"\(id)","task_id":"\(id)"}

            event: result
            data: {"status":"completed","type":"result","outputs":{"answer":"Hello there."},"run_id":"\(id)","task_id":"\(id)"}


            """)
        #expect(stream.body.state.withLock { $0.finished })
    }

    @Test func keepAliveCommentAfterFifteenSecondsOfSilenceOnly() {
        let scheduler = Scheduler(clock: .manual)
        let stream = EventStream(scheduler: scheduler)
        stream.send(.started(record()))
        let afterStart = pending(stream).count
        scheduler.advance(byNanoseconds: 14_999_000_000)
        #expect(pending(stream).count == afterStart, "no comment before 15 s of silence")
        scheduler.advance(byNanoseconds: 1_000_000)
        #expect(pending(stream).hasSuffix(": keep-alive\n\n"))
        let afterComment = pending(stream).count
        scheduler.advance(byNanoseconds: 5_000_000_000)
        stream.send(.tokens(outputs: ["answer"], tokens: ["x"]))
        let afterToken = pending(stream).count
        scheduler.advance(byNanoseconds: 14_000_000_000)  // 14 s after the token: still quiet
        #expect(pending(stream).count == afterToken && afterToken > afterComment)
        scheduler.advance(byNanoseconds: 1_000_000_000)
        #expect(pending(stream).hasSuffix(": keep-alive\n\n"))
        stream.finish(record(.terminated))
        #expect(scheduler.pendingCount == 0, "finishing cancels the keep-alive timer")
    }
}
