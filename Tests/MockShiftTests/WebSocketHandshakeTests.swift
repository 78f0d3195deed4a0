import HTTPTypes
import MockShiftHTTP
import Testing

/// The HTTP side of the WebSocket opening handshake (RFC 6455 §4, SPEC §10), a pure function of the request.
@Suite struct WebSocketHandshakeTests {
    static func request(method: HTTPRequest.Method = .get, _ headers: [(String, String)]) -> Request {
        var fields = HTTPFields()
        for (name, value) in headers { fields.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        return Request(head: HTTPRequest(method: method, scheme: nil, authority: "127.0.0.1", path: "/v1/ws/session",
                                         headerFields: fields))
    }

    /// What aiohttp (the SDK's client) sends, with RFC 6455 §1.3's example key.
    static let aiohttp: [(String, String)] = [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Authorization", "Bearer k"),
    ]

    @Test func acceptValueOfTheRFCExampleKeyIsTheRFCs() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func aValidUpgradeIsAnsweredWithTheKeysAcceptValue() throws {
        #expect(try WebSocketHandshake.check(Self.request(Self.aiohttp)) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func headerNamesAndTokensAreCaseInsensitiveAndConnectionIsATokenList() throws {
        let headers = [("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade"), ("sec-websocket-version", "13"),
                       ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]
        #expect(try WebSocketHandshake.check(Self.request(headers)) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func anotherVersionIsUnsupportedNotInvalid() {
        var headers = Self.aiohttp.filter { $0.0 != "Sec-WebSocket-Version" }
        headers.append(("Sec-WebSocket-Version", "8"))
        #expect(throws: WebSocketHandshake.Failure.unsupportedVersion("WebSocket version 8 is not supported; use 13")) {
            try WebSocketHandshake.check(Self.request(headers))
        }
    }

    @Test(arguments: ["Upgrade", "Connection", "Sec-WebSocket-Version", "Sec-WebSocket-Key"])
    func aMissingHandshakeHeaderIsInvalid(_ missing: String) {
        let headers = Self.aiohttp.filter { $0.0 != missing }
        #expect {
            try WebSocketHandshake.check(Self.request(headers))
        } throws: { error in
            guard case let .invalid(message) = error as? WebSocketHandshake.Failure else { return false }
            return message.contains(missing)
        }
    }

    @Test(arguments: ["", "not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==dGhl"])
    func aKeyThatIsNotBase64OfSixteenBytesIsInvalid(_ key: String) {
        var headers = Self.aiohttp.filter { $0.0 != "Sec-WebSocket-Key" }
        headers.append(("Sec-WebSocket-Key", key))
        #expect(throws: WebSocketHandshake.Failure.invalid("Not a WebSocket upgrade: Sec-WebSocket-Key must be the base64 of 16 bytes")) {
            try WebSocketHandshake.check(Self.request(headers))
        }
    }

    @Test func anUpgradeThatIsNotAGetIsInvalid() {
        #expect(throws: WebSocketHandshake.Failure.invalid("A WebSocket upgrade must be a GET request, not POST")) {
            try WebSocketHandshake.check(Self.request(method: .post, Self.aiohttp))
        }
    }
}
