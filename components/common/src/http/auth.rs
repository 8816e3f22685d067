//! Authentication of a request: the bearer access token, checked with the configured key
//! ([`crate::tokens::TokenKey`]: the signing key recomputes the signature's `S`, about 3 µs
//! in wasm32, instead of Ed25519 verification, 110–175 µs; the argument that this keeps
//! every guarantee is in `crate::tokens`). No host call besides reading the variables;
//! then [`check_generation`] refuses revoked tokens with what the rate-limit round trip
//! read (`crate::revocation`).

use spin_sdk::http::Request;

use super::{store_generation, Ctx};
use crate::error::ApiError;
use crate::repo;
use crate::revocation::{self, Seen};
use crate::store::{Db, Redis};
use crate::tokens::{token_key, AccessClaims};

/// Authenticates a request by its bearer token (signature, expiry, claims); records the
/// user in `ctx` for the log. Whether the token is revoked is [`check_generation`]'s, after
/// the rate-limit round trip that reads the generation.
pub fn authenticate(ctx: &mut Ctx, req: &Request) -> Result<AccessClaims, ApiError> {
    let token = bearer_token(req.header("authorization").and_then(|v| v.as_str()))?;
    let settings = ctx.config.tokens()?;
    let claims = token_key(&settings)?.verify_access_claims(token, &settings)?;
    ctx.user_id = Some(claims.user.to_string());
    Ok(claims)
}

/// The Redis key the rate-limit round trip must read for [`check_generation`].
pub fn generation_key(prefix: &str, claims: &AccessClaims) -> String {
    revocation::key(prefix, &claims.user)
}

/// Refuses an access token issued before the user's current token generation. `seen` is
/// what the rate-limit round trip read from Redis; when it knows nothing, the generation
/// comes from PostgreSQL (through the connection `db` opens, only then; returned for the
/// rest of the request) and is stored in Redis for the next requests. A user who no longer
/// exists is a 401 too.
pub fn check_generation(
    ctx: &mut Ctx,
    redis: &Redis,
    prefix: &str,
    claims: &AccessClaims,
    seen: Seen,
    db: impl FnOnce() -> Result<Db, ApiError>,
) -> Result<Option<Db>, ApiError> {
    let (current, opened) = match seen {
        Seen::Current(current) => (current, None),
        Seen::Unknown => {
            let db = db()?;
            let current = repo::token_generation(&db, &claims.user)?.ok_or(
                ApiError::InvalidAccessToken("the token's user no longer exists"),
            )?;
            store_generation(ctx, redis, prefix, &claims.user, current, false);
            (current, Some(db))
        }
    };
    if revocation::is_revoked(claims.generation, current) {
        return Err(ApiError::InvalidAccessToken("token revoked"));
    }
    Ok(opened)
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let value = header.ok_or(ApiError::InvalidAccessToken("missing bearer token"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(ApiError::InvalidAccessToken(
            "malformed Authorization header",
        ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::InvalidAccessToken(
            "malformed Authorization header",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
        assert!(bearer_token(None).is_err());
        assert!(bearer_token(Some("Basic abc")).is_err());
        assert!(bearer_token(Some("Bearer")).is_err());
    }
}
