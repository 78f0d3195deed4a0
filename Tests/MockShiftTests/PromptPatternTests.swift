import Testing
@testable import MockShift

@Suite struct PromptPatternTests {
    @Test func extendedPatternsWithWordBoundariesAndCaseFlag() throws {
        let hello = try #require(PromptPattern("(?i)\\bhello\\b"))
        #expect(hello.matches("Say HELLO there"))
        #expect(!hello.matches("othello"))
        #expect(try #require(PromptPattern("weather|rain")).matches("Will it rain?"))
        #expect(!(try #require(PromptPattern("^x")).matches("a x")))
    }

    @Test func invalidPatternsAndBackReferencesAreRefused() {
        #expect(PromptPattern("(") == nil)
        #expect(PromptPattern("(a)\\1") == nil)
    }

    @Test func nestedQuantifiersDoNotBacktrackExponentially() throws {
        // Swift Regex took minutes on 28 characters of this (newcomer review); glibc's matcher is polynomial.
        let evil = try #require(PromptPattern("(a+)+$"))
        #expect(!evil.matches(String(repeating: "a", count: 40) + "b"))
        // Only the first 4,096 characters are searched (here: all "a", so `$` matches at their end), in time.
        #expect(evil.matches(String(repeating: "a", count: 100_000) + "b"))
        let script = LLMScript(promptPattern: "(a|aa)+$", response: "x")
        #expect(!script.matches(nodeID: "llm", prompt: String(repeating: "a", count: 60) + "b"))
    }
}
