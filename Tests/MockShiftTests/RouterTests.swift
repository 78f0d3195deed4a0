import HTTPTypes
import Testing
@testable import MockShift

/// The methods the route table implies (RFC 9110): `HEAD` wherever `GET` is served, `OPTIONS` everywhere, and a
/// 405's `Allow` that names both (issue 11 item 4: every `HEAD` was 405).
@Suite struct RouterTests {
    static let router = Router.vectorShiftRoutes()

    /// A path the pattern matches: each `:name` replaced by a value.
    static func concrete(_ pattern: String) -> String {
        pattern.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.first == ":" ? "0123456789abcdef01234567" : String($0) }.joined(separator: "/")
    }

    @Test func headTakesTheGetRouteOfEveryGetPath() throws {
        for route in Self.router.table where route.method == .get {
            let path = Self.concrete(route.pattern)
            let (_, parameters) = try Self.router.match(.head, path)
            let (_, getParameters) = try Self.router.match(.get, path)
            #expect(parameters == getParameters, "HEAD \(path)")
        }
    }

    @Test func optionsListsThePathsMethodsWithHeadBesideGetAndOptionsLast() throws {
        #expect(Self.router.allowedMethods("/_mock/ready") == ["GET", "HEAD", "OPTIONS"])
        #expect(Self.router.allowedMethods("/_mock/faults") == ["POST", "GET", "HEAD", "DELETE", "OPTIONS"])
        #expect(Self.router.allowedMethods("/v1/pipeline/0123456789abcdef01234567/run") == ["POST", "OPTIONS"])
        #expect(Self.router.allowedMethods("/nowhere") == nil)
        for route in Self.router.table {
            let path = Self.concrete(route.pattern)
            _ = try Self.router.match(.options, path)  // answered (204 with Allow), whatever the path's methods
            let allowed = try #require(Self.router.allowedMethods(path), "\(path)")
            #expect(allowed.contains(route.method.rawValue) && allowed.last == "OPTIONS", "\(path): \(allowed)")
        }
        _ = try Self.router.match(.options, "*")
        #expect(throws: APIError.self) { try Self.router.match(.options, "/nowhere") }
    }

    @Test func methodNotAllowedNamesHeadAndOptionsWhereGetIsServed() throws {
        do {
            _ = try Self.router.match(.put, "/_mock/ready")
            Issue.record("PUT /_mock/ready was routed")
        } catch let error as APIError {
            #expect(error.kind == .methodNotAllowed)
            #expect(error.allowedMethods == ["GET", "HEAD", "OPTIONS"])
        }
        do {
            _ = try Self.router.match(.head, "/v1/pipeline/0123456789abcdef01234567/terminate")
            Issue.record("HEAD of a POST-only path was routed")
        } catch let error as APIError {
            #expect(error.kind == .methodNotAllowed)
            #expect(error.allowedMethods == ["POST", "OPTIONS"])
        }
    }
}
