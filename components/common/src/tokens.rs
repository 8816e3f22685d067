//! Access tokens (EdDSA JWTs through `jwt-simple`), the JWKS document, and refresh tokens.
//!
//! ## The signing key
//! The `jwt_signing_key` variable holds `ed25519:<kid>:<key>`, where `<kid>` is 1–64
//! characters of `[A-Za-z0-9_.-]` (published as the JWT header's `kid` and in the JWKS) and
//! `<key>` is base64url without padding of 64 bytes: the 32-byte Ed25519 seed followed by
//! its 32-byte public key (the layout `ed25519-compact` and `jwt-simple` use).
//! `scripts/gen-dev-key` prints a fresh one. Carrying the public key lets verifiers (every
//! authenticated request, in a fresh instance) use it directly instead of deriving it from
//! the seed, which costs a scalar multiplication; signers check that the halves match.
//!
//! ## Why jwt-simple works here
//! It is pure Rust with `default-features = false, features = ["pure-rust", "wasi-abi2"]`
//! (no BoringSSL; its clock reads WASI 0.2), and builds for `wasm32-wasip2`. The unused
//! algorithms it carries are dropped by the linker.
//!
//! ## Verification policy
//! Only `EdDSA` is accepted (jwt-simple rejects any other `alg`, `none` included, before
//! looking at the signature), the `kid` must be ours, `iss` and `aud` must match, `exp` and
//! `sub` must be present, `exp` is checked with 30 s of clock tolerance.

use std::collections::HashSet;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::prelude::*;
use jwt_simple::JWTError;

use crate::config::TokenSettings;
use crate::domain::Uuid;
use crate::error::ApiError;

/// Clock drift tolerated when checking `exp`/`iat`.
const TIME_TOLERANCE_SECONDS: u64 = 30;
/// Longest token we look at; ours are about 350 bytes.
const MAX_TOKEN_LENGTH: usize = 4096;

/// A parsed `jwt_signing_key`, able to sign.
pub struct SigningKey {
    kid: String,
    key_pair: Ed25519KeyPair,
}

/// The public half of the signing key, able to verify and to be published.
pub struct VerifyingKey {
    kid: String,
    public_key: Ed25519PublicKey,
    public_bytes: [u8; 32],
}

/// Splits `ed25519:<kid>:<base64url 64 bytes>` into kid and raw bytes.
fn split_key(raw: &str) -> Result<(String, [u8; 64]), String> {
    let mut parts = raw.trim().splitn(3, ':');
    let (Some(alg), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected `ed25519:<kid>:<base64url key>`".into());
    };
    if alg != "ed25519" {
        return Err(format!("unsupported key type `{alg}`, expected `ed25519`"));
    }
    if kid.is_empty()
        || kid.len() > 64
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("the key id must be 1-64 characters of [A-Za-z0-9_.-]".into());
    }
    let bytes = Base64UrlSafeNoPadding::decode_to_vec(b64, None)
        .map_err(|_| "the key is not base64url without padding".to_string())?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "the key must be 64 bytes (seed then public key)".to_string())?;
    Ok((kid.to_owned(), bytes))
}

impl SigningKey {
    /// Parses the variable and checks that the public half matches the seed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kid, bytes) = split_key(raw)?;
        let key_pair = Ed25519KeyPair::from_bytes(&bytes)
            .map_err(|_| "the public key does not match the seed".to_string())?
            .with_key_id(&kid);
        Ok(Self { kid, key_pair })
    }

    /// Signs an access token for `user_id`.
    pub fn issue_access_token(
        &self,
        user_id: &Uuid,
        settings: &TokenSettings,
    ) -> Result<String, ApiError> {
        let claims = Claims::create(Duration::from_secs(u64::from(
            settings.access_token_ttl_seconds,
        )))
        .with_issuer(&settings.issuer)
        .with_audience(&settings.audience)
        .with_subject(user_id.as_str());
        self.key_pair
            .sign(claims)
            .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl VerifyingKey {
    /// Parses the variable, keeping only the public half (no curve arithmetic).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kid, bytes) = split_key(raw)?;
        let mut public_bytes = [0u8; 32];
        public_bytes.copy_from_slice(&bytes[32..]);
        let public_key = Ed25519PublicKey::from_bytes(&public_bytes)
            .map_err(|_| "invalid public key".to_string())?
            .with_key_id(&kid);
        Ok(Self {
            kid,
            public_key,
            public_bytes,
        })
    }

    /// Verifies a bearer token and returns the user it was issued to.
    pub fn verify_access_token(
        &self,
        token: &str,
        settings: &TokenSettings,
    ) -> Result<Uuid, ApiError> {
        let options = VerificationOptions {
            required_key_id: Some(self.kid.clone()),
            allowed_issuers: Some(HashSet::from([settings.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([settings.audience.clone()])),
            time_tolerance: Some(Duration::from_secs(TIME_TOLERANCE_SECONDS)),
            max_token_length: Some(MAX_TOKEN_LENGTH),
            max_header_length: Some(512),
            ..Default::default()
        };
        let claims = self
            .public_key
            .verify_token::<NoCustomClaims>(token, Some(options))
            .map_err(|e| match e.downcast_ref::<JWTError>() {
                Some(JWTError::TokenHasExpired) => ApiError::InvalidAccessToken("token expired"),
                _ => ApiError::InvalidAccessToken("token invalid"),
            })?;
        if claims.expires_at.is_none() {
            return Err(ApiError::InvalidAccessToken("token invalid"));
        }
        claims
            .subject
            .as_deref()
            .and_then(Uuid::parse)
            .ok_or(ApiError::InvalidAccessToken("token invalid"))
    }

    /// The JWKS document (RFC 7517/8037) publishing this key.
    pub fn jwks_json(&self) -> String {
        let x = Base64UrlSafeNoPadding::encode_to_string(self.public_bytes).unwrap_or_default();
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": x,
            }]
        })
        .to_string()
    }
}

/// What a deployment without `jwt_signing_key` answers (503), instead of any built-in key.
pub const NO_SIGNING_KEY: &str = "no access-token signing key is set (variable jwt_signing_key)";

/// The signing key from the settings: 503 when absent or unusable.
pub fn signing_key(settings: &TokenSettings) -> Result<SigningKey, ApiError> {
    let raw = settings
        .signing_key
        .as_deref()
        .ok_or(ApiError::NotConfigured(NO_SIGNING_KEY))?;
    SigningKey::parse(raw)
        .map_err(|e| ApiError::Misconfigured(format!("variable `jwt_signing_key`: {e}")))
}

/// The verifying key from the settings: 503 when absent or unusable.
pub fn verifying_key(settings: &TokenSettings) -> Result<VerifyingKey, ApiError> {
    let raw = settings
        .signing_key
        .as_deref()
        .ok_or(ApiError::NotConfigured(NO_SIGNING_KEY))?;
    VerifyingKey::parse(raw)
        .map_err(|e| ApiError::Misconfigured(format!("variable `jwt_signing_key`: {e}")))
}

/// Authenticates a request by its bearer token; records the user in `ctx` for the log.
pub fn authenticate(
    ctx: &mut crate::http::Ctx,
    req: &spin_sdk::http::Request,
    vars: &dyn crate::config::VariableSource,
) -> Result<(Uuid, TokenSettings), ApiError> {
    let token = bearer_token(req.header("authorization").and_then(|v| v.as_str()))?;
    let settings = TokenSettings::load_for_verifying(vars)?;
    let user = verifying_key(&settings)?.verify_access_token(token, &settings)?;
    ctx.user_id = Some(user.to_string());
    Ok((user, settings))
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

/// A refresh token as handed to the client: 32 random bytes, base64url (43 characters).
/// Only its SHA-256 is stored, so a database leak does not leak usable tokens; SHA-256 (not
/// argon2) is enough because the token has 256 bits of entropy.
pub struct RefreshToken(String);

impl RefreshToken {
    /// A fresh random token.
    pub fn generate() -> Result<Self, ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
        let text = Base64UrlSafeNoPadding::encode_to_string(bytes)
            .map_err(|e| ApiError::Internal(format!("encoding: {e}")))?;
        Ok(Self(text))
    }

    /// Accepts a token string of the right shape; anything else is an invalid token.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::InvalidRefreshToken)
        }
    }

    /// The token text for the response.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn hash(&self) -> Vec<u8> {
        hmac_sha256::Hash::hash(self.0.as_bytes()).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed test key (seed = 32 × 0x01), in the variable's format.
    fn test_key() -> String {
        let kp = ed25519_compact_keypair([1u8; 32]);
        format!(
            "ed25519:test-1:{}",
            Base64UrlSafeNoPadding::encode_to_string(kp).unwrap()
        )
    }

    fn ed25519_compact_keypair(seed: [u8; 32]) -> [u8; 64] {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        let mut out = [0u8; 64];
        out.copy_from_slice(&kp[..]);
        out
    }

    fn settings() -> TokenSettings {
        TokenSettings {
            signing_key: Some(test_key()),
            issuer: "todo-api".into(),
            audience: "todo-api".into(),
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 3600,
        }
    }

    fn user() -> Uuid {
        Uuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap()
    }

    #[test]
    fn sign_then_verify() {
        let s = settings();
        let signer = SigningKey::parse(&test_key()).unwrap();
        let verifier = VerifyingKey::parse(&test_key()).unwrap();
        let token = signer.issue_access_token(&user(), &s).unwrap();
        assert_eq!(verifier.verify_access_token(&token, &s).unwrap(), user());
        let header = token.split('.').next().unwrap();
        let header = Base64UrlSafeNoPadding::decode_to_vec(header, None).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "test-1");
    }

    #[test]
    fn rejects_wrong_audience_issuer_tampering_and_alg_none() {
        let s = settings();
        let signer = SigningKey::parse(&test_key()).unwrap();
        let verifier = VerifyingKey::parse(&test_key()).unwrap();
        let token = signer.issue_access_token(&user(), &s).unwrap();

        let other_aud = TokenSettings {
            audience: "other".into(),
            ..settings()
        };
        assert!(verifier.verify_access_token(&token, &other_aud).is_err());
        let other_iss = TokenSettings {
            issuer: "other".into(),
            ..settings()
        };
        assert!(verifier.verify_access_token(&token, &other_iss).is_err());

        // Flip one character of the payload.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload = parts[1].clone().into_bytes();
        payload[5] = if payload[5] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(payload).unwrap();
        assert!(verifier.verify_access_token(&parts.join("."), &s).is_err());

        // alg: none with the same claims and no signature.
        let none_header = Base64UrlSafeNoPadding::encode_to_string(
            br#"{"alg":"none","typ":"JWT","kid":"test-1"}"#,
        )
        .unwrap();
        let original: Vec<&str> = token.split('.').collect();
        let forged = format!("{none_header}.{}.", original[1]);
        assert!(verifier.verify_access_token(&forged, &s).is_err());
    }

    #[test]
    fn rejects_another_key_and_expired_tokens() {
        let s = settings();
        let verifier = VerifyingKey::parse(&test_key()).unwrap();
        let other = format!(
            "ed25519:test-1:{}",
            Base64UrlSafeNoPadding::encode_to_string(ed25519_compact_keypair([2u8; 32])).unwrap()
        );
        let token = SigningKey::parse(&other)
            .unwrap()
            .issue_access_token(&user(), &s)
            .unwrap();
        assert!(verifier.verify_access_token(&token, &s).is_err());

        let signer = SigningKey::parse(&test_key()).unwrap();
        let expired_claims = Claims::create(Duration::from_secs(60))
            .with_issuer("todo-api")
            .with_audience("todo-api")
            .with_subject(user().as_str());
        let mut expired_claims = expired_claims;
        let past = Clock::now_since_epoch() - Duration::from_secs(3600);
        expired_claims.issued_at = Some(past - Duration::from_secs(60));
        expired_claims.expires_at = Some(past);
        let token = signer.key_pair.sign(expired_claims).unwrap();
        let err = verifier.verify_access_token(&token, &s).unwrap_err();
        assert!(matches!(err, ApiError::InvalidAccessToken("token expired")));
    }

    #[test]
    fn key_format_errors() {
        assert!(SigningKey::parse("").is_err());
        assert!(SigningKey::parse("rsa:k:AAAA").is_err());
        assert!(SigningKey::parse("ed25519::AAAA").is_err());
        assert!(SigningKey::parse("ed25519:k:not base64!").is_err());
        // Seed with a public key that does not belong to it.
        let mut bytes = ed25519_compact_keypair([1u8; 32]);
        bytes[40] ^= 1;
        let mismatched = format!(
            "ed25519:k:{}",
            Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
        );
        assert!(SigningKey::parse(&mismatched).is_err());
    }

    #[test]
    fn gen_dev_key_prints_a_key_this_module_accepts() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/gen-dev-key");
        let Ok(out) = std::process::Command::new(script).output() else {
            eprintln!("skipped: cannot run {script}");
            return;
        };
        if !out.status.success() {
            eprintln!("skipped: {script} failed (openssl missing?)");
            return;
        }
        let key = String::from_utf8(out.stdout).unwrap();
        let signer = SigningKey::parse(&key).expect("gen-dev-key output parses and matches");
        let verifier = VerifyingKey::parse(&key).unwrap();
        let token = signer.issue_access_token(&user(), &settings()).unwrap();
        assert_eq!(
            verifier.verify_access_token(&token, &settings()).unwrap(),
            user()
        );
        assert!(signer.kid().starts_with("dev-"));
    }

    #[test]
    fn jwks_publishes_the_public_key_only() {
        let verifier = VerifyingKey::parse(&test_key()).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&verifier.jwks_json()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["kid"], "test-1");
        assert!(key.get("d").is_none());
        assert_eq!(key["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
        assert!(bearer_token(None).is_err());
        assert!(bearer_token(Some("Basic abc")).is_err());
        assert!(bearer_token(Some("Bearer")).is_err());
    }

    #[test]
    fn refresh_tokens() {
        let a = RefreshToken::generate().unwrap();
        let b = RefreshToken::generate().unwrap();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 43);
        assert!(RefreshToken::parse(a.as_str()).is_ok());
        assert_eq!(a.hash().len(), 32);
        assert!(RefreshToken::parse("short").is_err());
        assert!(RefreshToken::parse(&"=".repeat(43)).is_err());
    }
}
