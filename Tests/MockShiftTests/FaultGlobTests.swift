import Testing
@testable import MockShift

@Suite struct FaultGlobTests {
    @Test func starsStayInASegmentAndDoubleStarsCrossThem() {
        #expect(Faults.glob("/v1/pipeline/*/run", matches: "/v1/pipeline/abc/run"))
        #expect(!Faults.glob("/v1/pipeline/*/run", matches: "/v1/pipeline/a/b/run"))
        #expect(Faults.glob("/v1/**", matches: "/v1/pipeline/a/b/run"))
        #expect(Faults.glob("/v1/pipeline/*", matches: "/v1/pipeline/"))
        #expect(!Faults.glob("/v1/pipelines", matches: "/v1/pipeline"))
        #expect(Faults.glob("/**/status/*", matches: "/v1/pipeline/p/run/status/t"))
    }

    @Test func manyStarsDoNotBacktrackExponentially() {
        // Exponential before: every star retried every split of the path.
        let pattern = "/" + String(repeating: "*a", count: 40) + "b"
        let path = "/" + String(repeating: "a", count: 200)
        #expect(!Faults.glob(pattern, matches: path))
        #expect(!Faults.glob("/" + String(repeating: "**a", count: 40) + "b", matches: path))
        // Quadratic in the path with memoised backtracking: seconds for this one.
        let long = "/v1/pipeline/" + String(repeating: "a/", count: 3000)
        #expect(!Faults.glob("/" + String(repeating: "**/", count: 340) + "x", matches: long))
        #expect(Faults.glob("/v1/**/a/", matches: long))
    }
}
