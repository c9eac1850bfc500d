public import Foundation
public import HTTPTypes
public import Hummingbird
import AuditLog
import GRDB
import Logging

/// An RFC 9457 problem: every 4xx (and the rare 5xx) the service answers is one of these, as
/// `application/problem+json`, with a stable `type` URI per cause so a client can act on it without parsing prose.
public struct Problem: Error, HTTPResponseError, Sendable, Equatable {
    /// The base of every problem type URI; the last path component names the cause (`…/problems/nonce-reused`).
    public static let typeBase = "https://cmk.dev/problems/"
    public static let mediaType = "application/problem+json"

    public let status: HTTPResponse.Status
    /// The cause, a short kebab-case name: the last component of `type`.
    public let code: String
    /// What went wrong, for a person; never holds secrets or evidence bytes.
    public let detail: String
    /// What was missing, for 422s about collateral (`["vcek"]`, `["tcb-info", "qe-identity"]`).
    public let missing: [String]?
    /// Seconds to wait, for 429s.
    public let retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ code: String, _ detail: String, missing: [String]? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.detail = detail
        self.missing = missing
        self.retryAfter = retryAfter
    }

    public var type: String { Self.typeBase + code }
    public var title: String { status.reasonPhrase }

    /// The JSON body: `type`, `title`, `status`, `detail`, and `missing` when set.
    public var body: [UInt8] {
        var object: [String: Any] = ["type": type, "title": title, "status": status.code, "detail": detail]
        if let missing { object["missing"] = missing }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return [UInt8](data)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    /// The response: status, `Content-Type: application/problem+json`, `Retry-After` for 429s.
    public func response() -> Response {
        var headers: HTTPFields = [.contentType: Self.mediaType]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension Problem {
    static func badRequest(_ code: String, _ detail: String) -> Problem { Problem(.badRequest, code, detail) }
    static func unprocessable(_ code: String, _ detail: String, missing: [String]? = nil) -> Problem {
        Problem(.unprocessableContent, code, detail, missing: missing)
    }
    static func notFound(_ code: String, _ detail: String) -> Problem { Problem(.notFound, code, detail) }
    static let unauthorized = Problem(
        .unauthorized, "unauthorized", "this endpoint needs the tenant's administrator token: Authorization: Bearer <token>")
    static let forbidden = Problem(.forbidden, "forbidden", "the token presented is not this tenant's administrator token")
}

/// Turns every error a handler or the router throws into a problem+json response, so no client ever sees
/// Hummingbird's default error body, and an unexpected error becomes a 500 that names no internals.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return problem.response()
        } catch let error as HTTPError {
            return Self.problem(for: error.status, message: error.body).response()
        } catch let error as any HTTPResponseError {
            return Self.problem(for: error.status, message: nil).response()
        } catch let error as StoreError where error.code == .database {
            return Self.storeUnavailable(error.reason, context: context)
        } catch let error as AuditLogError where error.code == .database {
            return Self.storeUnavailable(error.reason, context: context)
        } catch let error as DatabaseError {
            return Self.storeUnavailable(error.message ?? error.description, context: context)
        } catch is CancellationError {
            return Problem(.serviceUnavailable, "cancelled", "the request was cancelled (the server is shutting down)").response()
        } catch {
            context.logger.error("unexpected error", metadata: ["type": "\(Swift.type(of: error))"])
            return Problem(.internalServerError, "internal", "the server failed to answer this request; see its log").response()
        }
    }

    /// The store (SQLite file, PostgreSQL server) failed or did not answer: a 503 the client may retry, and the
    /// reason in the server's log (never in the answer: it names the database's location).
    static func storeUnavailable(_ reason: String, context: Context) -> Response {
        context.logger.error("the store is unavailable", metadata: ["reason": "\(reason)"])
        return Problem(
            .serviceUnavailable, "store-unavailable",
            "the service's database did not answer, so no result was issued; ask for a new nonce and retry later (the server log says why)",
            retryAfter: 5
        ).response()
    }

    static func problem(for status: HTTPResponse.Status, message: String?) -> Problem {
        switch status {
        case .notFound: return Problem(.notFound, "not-found", "no such endpoint")
        case .methodNotAllowed: return Problem(.methodNotAllowed, "method-not-allowed", "this endpoint does not take this method")
        case .contentTooLarge:
            return Problem(.contentTooLarge, "body-too-large", "the request body is larger than this server accepts")
        case .requestTimeout: return Problem(.requestTimeout, "timeout", "the request took too long")
        default: return Problem(status, "http-\(status.code)", message ?? status.reasonPhrase)
        }
    }
}
