import HTTPTypes
import MockShiftHTTP

/// The live dashboard (issue 7): `Sources/MockShift/Dashboard/index.html`, `app.js`, `chat.js` (chatbots and
/// their conversations, issue 12 item 7) and `style.css`, kept as plain files in the repository and compiled into
/// the binary by SwiftPM (`resources: [.embedInCode(…)]` in Package.swift generates `PackageResources` byte
/// arrays), so the executable serves them from anywhere, with no bundle on disk, no build step and no network.
///
/// Served without authentication, also with `--api-key` (see `MockShiftApp.isPublic`): the files are the same
/// for everyone and hold no data. The page asks for the key and sends it in the `Authorization` header of every
/// request it makes, the live feed (`GET /_mock/events`) included: keys never go into URLs (SPEC §7).
enum DashboardHandlers {
    /// The files under `/_mock/ui/`, by name: bytes and content type.
    static let files: [String: (bytes: [UInt8], type: String)] = [
        "index.html": (PackageResources.index_html, "text/html; charset=utf-8"),
        "app.js": (PackageResources.app_js, "text/javascript; charset=utf-8"),
        "chat.js": (PackageResources.chat_js, "text/javascript; charset=utf-8"),
        "style.css": (PackageResources.style_css, "text/css; charset=utf-8"),
    ]

    /// `GET /` and `GET /_mock/ui`: the page.
    static func page(_ c: HandlerContext) throws -> Reply {
        try serve(c, "index.html")
    }

    /// `GET /_mock/ui/{file}`: the page's script and style sheet (and the page itself); 404 for anything else.
    static func file(_ c: HandlerContext) throws -> Reply {
        try serve(c, c.parameter("file"))
    }

    /// `GET /favicon.ico`: 204 without a body. Browsers ask for it with every page; an answer that is not an
    /// error keeps their console clean, and the page needs no icon.
    static func favicon(_ c: HandlerContext) throws -> Reply {
        .empty(.noContent, [.cacheControl: "max-age=86400"])
    }

    private static func serve(_ c: HandlerContext, _ name: String) throws -> Reply {
        guard let file = files[name] else { throw APIError(.notFound, "Not found: /_mock/ui/\(name)") }
        // The page loads only its own files and talks only to this daemon (no inline script, no CDN).
        let headers: HTTPFields = [
            .contentType: file.type,
            .cacheControl: "no-cache",
            .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
            .xContentTypeOptions: "nosniff",
        ]
        c.writer.send(Response(status: .ok, headerFields: headers, body: file.bytes))
        return .later
    }

    /// True for the dashboard's paths (answered without a key).
    static func isDashboardPath(_ path: String) -> Bool {
        path == "/" || path == "/_mock/ui" || path == "/_mock/ui/" || (path.hasPrefix("/_mock/ui/") && !path.dropFirst(10).contains("/"))
    }
}
