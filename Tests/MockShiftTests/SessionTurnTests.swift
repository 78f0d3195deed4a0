import Testing
@testable import MockShift

/// A session turn's delta numbering (SPEC §10): indexes from 0, at most 256 delta frames per turn.
@Suite struct SessionTurnTests {
    static func turn(_ hub: SessionHub = SessionHub()) -> SessionTurn {
        SessionTurn(hub: hub, sessionID: IDs.make(), namespace: "k1", sender: ["object_id": "b", "object_type": "chatbot"],
                    userText: "hi")
    }

    @Test func pastTheCapTextIsHeldNotSentAndTheTextSoFarHasEverything() {
        let turn = Self.turn()
        for k in 0..<300 { turn.delta(" w\(k)") }
        let st = turn.state.withLock { $0 }
        #expect(st.deltas == SessionTurn.maxDeltas - 1, "the last frame is kept for the held text")
        #expect(st.held == (255..<300).map { " w\($0)" }.joined())
        #expect(st.text == (0..<300).map { " w\($0)" }.joined())
    }

    @Test func emptyTextSendsNoDeltaAndOnlyOneTurnPerSessionIsLive() {
        let hub = SessionHub()
        let turn = Self.turn(hub)
        turn.delta("")
        #expect(turn.state.withLock { $0.deltas } == 0)
        #expect(hub.begin(turn))
        let second = SessionTurn(hub: hub, sessionID: turn.sessionID, namespace: "k1", sender: [:], userText: "again")
        #expect(!hub.begin(second))
        hub.end(turn)
        #expect(hub.begin(second))
        #expect(hub.liveTurns(namespace: "k1").count == 1 && hub.liveTurns(namespace: "k2").isEmpty)
    }
}
