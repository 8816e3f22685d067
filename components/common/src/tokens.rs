//! Access tokens (EdDSA JWTs), the JWKS document, and refresh tokens.
//!
//! ## The signing key
//! The `jwt_signing_key` variable holds `ed25519:<kid>:<key>`, where `<kid>` is 1–64
//! characters of `[A-Za-z0-9_.-]` (published as the JWT header's `kid` and in the JWKS) and
//! `<key>` is base64url without padding of 64 bytes: the 32-byte Ed25519 seed followed by
//! its 32-byte public key. `scripts/gen-dev-key` prints a fresh one. Carrying the public key
//! lets the checker below and the JWKS use it directly instead of deriving it from the seed
//! (a scalar multiplication); signers check that the halves match.
//!
//! ## Why not `jwt-simple`
//! `jwt-simple` (with `pure-rust` and `wasi-abi2`) does build for `wasm32-wasip2`, and the
//! first version of this module used it. But its Ed25519 is `ed25519-compact`, whose field
//! arithmetic multiplies 64-bit limbs into `u128`, which WebAssembly (no 64×64→128
//! multiply) turns into `__multi3` library calls: one verification measured about 560 µs
//! inside a component on this machine (release edge-host), the largest cost of every
//! authenticated request. `ed25519-dalek` selects its 32-bit backend on `wasm32` (native
//! `i64.mul` products) and verified the same signature in about 150–230 µs. So the JWT
//! layer is this small, strict implementation over `ed25519-dalek` (`verify_strict`, which
//! also rejects small-order keys and non-canonical signatures). It also drops jwt-simple's
//! unused RSA/ECDSA dependencies from the build.
//!
//! ## Checking a token with the signing key ([`TokenKey`])
//! The components that check access tokens (`todos`) are given the whole `jwt_signing_key`,
//! seed included, like `auth`. So instead of Ed25519 verification (a double scalar
//! multiplication and two point decompressions: 110–175 µs per request in wasm32 on this
//! machine, the largest guest cost of `GET /todos`) they check that the signature is the one
//! this key issued, with two SHA-512s and one scalar multiply-add (about 3 µs):
//!
//! RFC 8032 signing is deterministic. With `h = SHA-512(seed)`, `s = clamp(h[..32]) mod L`,
//! `prefix = h[32..]` and `A` the public key, the signature of `M` (here `header.claims`)
//! is `R || S` with `r = SHA-512(prefix || M) mod L`, `R = r·B`,
//! `S = r + SHA-512(R || A || M)·s mod L`. [`TokenKey`] accepts a token exactly when its `S`
//! equals `SHA-512(prefix || M) + SHA-512(R || A || M)·s mod L` for the token's own `M` and
//! `R`, compared in constant time. Why that keeps every guarantee:
//!
//! - **Every token `auth` issues passes**: that is how `auth` computed `S`. Tokens signed by
//!   an independent implementation (ed25519-compact, in the tests) pass too.
//! - **Nobody without the seed can make a passing token for new claims.** For claims `M`
//!   the key never signed, `r = SHA-512(prefix || M)` was never computed by anyone who knows
//!   `prefix` (32 secret bytes), and what issued tokens reveal about other `r`s is only
//!   `r·B` and `r + k·s` (never the hash itself, so no length extension). Treating
//!   SHA-512 keyed by the secret prefix as a pseudo-random function (the assumption
//!   Ed25519's own nonces rest on: a predictable `r` gives away `s = (S - r)/k` from one
//!   token), the `S` the check wants is uniformly random to the attacker, whatever `R` it
//!   picks and even if it knew `s`: a guess succeeds with probability 2^-252.
//! - **Old claims with another `R`**: a passing `(R', S')` for claims `auth` did sign needs
//!   `S' - S = (k' - k)·s`, i.e. `s` (the discrete logarithm of the public key); and it
//!   would only carry claims the holder already has a valid token for.
//! - **No malleability**: `S` must equal the reduced value byte for byte, so `S + L` and any
//!   other encoding fail, as `verify_strict` rejects them.
//! - Unchanged: the token format, the header and claims policy below (same code), expiry,
//!   what the JWKS publishes and how third parties verify ([`VerifyingKey`], which is
//!   standard `verify_strict` and stays the reference the tests compare against).
//!   Revocation (`crate::revocation`: the `gen` claim against the user's token
//!   generation) is checked after the signature, the same way for both checkers. The secret the checker
//!   uses is the one the component already received; the comparison is constant-time and
//!   the arithmetic (curve25519-dalek's `Scalar`) is constant-time too.
//!
//! A component given only the public key would have to use [`VerifyingKey`]; none is today.
//! Other options measured in wasm32 (`wasm32-wasip2`, release, min of batches):
//! curve25519-dalek's 64-bit backend (`--cfg curve25519_dalek_bits="64"`) verifies in
//! 400–700 µs (64×64→128-bit products become `__multi3` calls), ed25519-compact in
//! 410–900 µs, and re-signing (compare the whole `R || S`, which needs `r·B`) 40–60 µs.
//!
//! ## Verification policy
//! Exactly three base64url parts; the header must say `"alg":"EdDSA"` (anything else,
//! `none` included, is rejected before the signature is looked at), carry our `kid`, have
//! `typ` `JWT` if present, and no `crit`. The signature is checked before the claims are
//! parsed. Then `exp` must be present and not past (30 s of clock tolerance), `nbf`/`iat`
//! not in the future, `iss` and `aud` equal to the configured values, `sub` a UUID.

use std::time::{SystemTime, UNIX_EPOCH};

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use curve25519_dalek::digest::Digest;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use sha2::Sha512;
use subtle::ConstantTimeEq;

use crate::config::TokenSettings;
use crate::domain::Uuid;
use crate::error::ApiError;

/// Clock drift tolerated when checking `exp`/`nbf`/`iat`.
const TIME_TOLERANCE_SECONDS: i64 = 30;
/// Longest token we look at; ours are about 350 bytes.
const MAX_TOKEN_LENGTH: usize = 4096;
/// Longest encoded header we decode.
const MAX_HEADER_LENGTH: usize = 512;
/// The only algorithm issued and accepted.
const ALG: &str = "EdDSA";

/// A parsed `jwt_signing_key`, able to sign.
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

/// The public half of the signing key, able to verify and to be published.
pub struct VerifyingKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
    public_bytes: [u8; 32],
}

/// The signing key as a component that checks tokens holds it: checks a token by
/// recomputing its signature's `S` (see the module docs), without any point arithmetic.
pub struct TokenKey {
    kid: String,
    secret: ExpandedSecretKey,
    public_bytes: [u8; 32],
}

/// The JOSE header we issue and inspect.
#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing)]
    crit: Option<serde_json::Value>,
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// The claims we require on the way in. `exp` is not optional.
#[derive(Deserialize)]
struct IncomingClaims {
    iss: String,
    aud: Audience,
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    /// The user's token generation at issue time; tokens from before the claim existed
    /// count as generation 0.
    #[serde(default)]
    gen: i64,
}

/// What a valid access token says: whose it is and the token generation it was issued at
/// (checked against the user's current one: `crate::revocation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`.
    pub user: Uuid,
    /// `gen`.
    pub generation: i64,
}

/// The claims we issue.
#[derive(Serialize)]
struct OutgoingClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    gen: i64,
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn encode_json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    let json =
        serde_json::to_vec(value).map_err(|e| ApiError::Internal(format!("jwt json: {e}")))?;
    Base64UrlSafeNoPadding::encode_to_string(json)
        .map_err(|e| ApiError::Internal(format!("jwt base64: {e}")))
}

fn decode_part(part: &str) -> Result<Vec<u8>, ApiError> {
    Base64UrlSafeNoPadding::decode_to_vec(part, None)
        .map_err(|_| ApiError::InvalidAccessToken("token invalid"))
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
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().to_bytes()[..] != bytes[32..] {
            return Err("the public key does not match the seed".into());
        }
        Ok(Self { kid, key })
    }

    /// Signs an access token for `user_id`, valid for `ttl_seconds`
    /// (`access_token_ttl_seconds`), at token generation 0 (tests).
    pub fn issue_access_token(
        &self,
        user_id: &Uuid,
        settings: &TokenSettings,
        ttl_seconds: u32,
    ) -> Result<String, ApiError> {
        self.issue_access_token_at(user_id, 0, settings, ttl_seconds)
    }

    /// Signs an access token for `user_id` carrying their current token `generation`
    /// (claim `gen`), valid for `ttl_seconds`.
    pub fn issue_access_token_at(
        &self,
        user_id: &Uuid,
        generation: i64,
        settings: &TokenSettings,
        ttl_seconds: u32,
    ) -> Result<String, ApiError> {
        let now = now_seconds();
        let header = encode_json(&Header {
            alg: ALG.to_owned(),
            typ: Some("JWT".to_owned()),
            kid: Some(self.kid.clone()),
            crit: None,
        })?;
        let claims = encode_json(&OutgoingClaims {
            iss: &settings.issuer,
            aud: &settings.audience,
            sub: user_id.as_str(),
            iat: now,
            nbf: now,
            exp: now + i64::from(ttl_seconds),
            gen: generation,
        })?;
        let signing_input = format!("{header}.{claims}");
        let signature = self.key.sign(signing_input.as_bytes());
        let signature = Base64UrlSafeNoPadding::encode_to_string(signature.to_bytes())
            .map_err(|e| ApiError::Internal(format!("jwt base64: {e}")))?;
        Ok(format!("{signing_input}.{signature}"))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl VerifyingKey {
    /// Parses the variable, keeping only the public half.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kid, bytes) = split_key(raw)?;
        let mut public_bytes = [0u8; 32];
        public_bytes.copy_from_slice(&bytes[32..]);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public_bytes)
            .map_err(|_| "invalid public key".to_string())?;
        Ok(Self {
            kid,
            key,
            public_bytes,
        })
    }

    /// Verifies a bearer token (Ed25519 `verify_strict`) and returns the user it was issued
    /// to.
    pub fn verify_access_token(
        &self,
        token: &str,
        settings: &TokenSettings,
    ) -> Result<Uuid, ApiError> {
        check_token(token, &self.kid, settings, |input, signature| {
            self.key
                .verify_strict(input, &Signature::from_bytes(signature))
                .is_ok()
        })
        .map(|claims| claims.user)
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

/// The token policy (module docs, "Verification policy") around a signature check:
/// `signature_ok(signing_input, signature)` runs after the header passed and before the
/// claims are parsed.
fn check_token(
    token: &str,
    kid: &str,
    settings: &TokenSettings,
    signature_ok: impl FnOnce(&[u8], &[u8; 64]) -> bool,
) -> Result<AccessClaims, ApiError> {
    let invalid = ApiError::InvalidAccessToken("token invalid");
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(invalid);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid);
    };
    if header_b64.len() > MAX_HEADER_LENGTH {
        return Err(invalid);
    }

    // 1. The header, before any cryptography: algorithm pinned, our key id.
    let header: Header = serde_json::from_slice(&decode_part(header_b64)?)
        .map_err(|_| ApiError::InvalidAccessToken("token invalid"))?;
    let typ_ok = header
        .typ
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("JWT"));
    if header.alg != ALG || header.kid.as_deref() != Some(kid) || !typ_ok || header.crit.is_some() {
        return Err(invalid);
    }

    // 2. The signature over `header.claims`, as sent.
    let signature: [u8; 64] = decode_part(signature_b64)?
        .try_into()
        .map_err(|_| ApiError::InvalidAccessToken("token invalid"))?;
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    if !signature_ok(signing_input.as_bytes(), &signature) {
        return Err(invalid);
    }

    // 3. Only now the claims.
    let claims: IncomingClaims = serde_json::from_slice(&decode_part(claims_b64)?)
        .map_err(|_| ApiError::InvalidAccessToken("token invalid"))?;
    let now = now_seconds();
    if claims.exp + TIME_TOLERANCE_SECONDS < now {
        return Err(ApiError::InvalidAccessToken("token expired"));
    }
    let in_future = |t: Option<i64>| t.is_some_and(|t| t > now + TIME_TOLERANCE_SECONDS);
    if in_future(claims.nbf)
        || in_future(claims.iat)
        || claims.iss != settings.issuer
        || !claims.aud.contains(&settings.audience)
    {
        return Err(invalid);
    }
    let user = Uuid::parse(&claims.sub).ok_or(invalid)?;
    Ok(AccessClaims {
        user,
        generation: claims.gen,
    })
}

impl TokenKey {
    /// Parses the variable: the seed's SHA-512 gives the secret scalar and nonce prefix;
    /// the public half is used as given (as [`VerifyingKey`] does; `auth` refuses a key
    /// whose halves do not match, so no token is issued under such a key).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kid, bytes) = split_key(raw)?;
        let expanded: [u8; 64] = Sha512::digest(&bytes[..32]).into();
        let mut public_bytes = [0u8; 32];
        public_bytes.copy_from_slice(&bytes[32..]);
        Ok(Self {
            kid,
            secret: ExpandedSecretKey::from_bytes(&expanded),
            public_bytes,
        })
    }

    /// Checks a bearer token (module docs, "Checking a token with the signing key") and
    /// returns the user it was issued to. Same policy and errors as
    /// [`VerifyingKey::verify_access_token`].
    pub fn verify_access_token(
        &self,
        token: &str,
        settings: &TokenSettings,
    ) -> Result<Uuid, ApiError> {
        self.verify_access_claims(token, settings)
            .map(|claims| claims.user)
    }

    /// As [`TokenKey::verify_access_token`], with the token generation.
    pub fn verify_access_claims(
        &self,
        token: &str,
        settings: &TokenSettings,
    ) -> Result<AccessClaims, ApiError> {
        check_token(token, &self.kid, settings, |input, signature| {
            self.issued_this(input, signature)
        })
    }

    /// Whether `signature`'s `S` is the one this key computes for `input` and the
    /// signature's own `R`.
    fn issued_this(&self, input: &[u8], signature: &[u8; 64]) -> bool {
        let r = Scalar::from_hash(
            Sha512::new()
                .chain_update(self.secret.hash_prefix)
                .chain_update(input),
        );
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(&signature[..32])
                .chain_update(self.public_bytes)
                .chain_update(input),
        );
        let expected = k * self.secret.scalar + r;
        expected.as_bytes().ct_eq(&signature[32..]).into()
    }
}

/// What a deployment without `jwt_signing_key` answers (503), instead of any built-in key.
pub const NO_SIGNING_KEY: &str = "no access-token signing key is set (variable jwt_signing_key)";

/// The signing key from the settings: 503 when absent or unusable.
pub fn signing_key(settings: &TokenSettings) -> Result<SigningKey, ApiError> {
    key_from(settings, SigningKey::parse)
}

/// The token-checking key from the settings: 503 when absent or unusable.
pub fn token_key(settings: &TokenSettings) -> Result<TokenKey, ApiError> {
    key_from(settings, TokenKey::parse)
}

/// The verifying key from the settings: 503 when absent or unusable.
pub fn verifying_key(settings: &TokenSettings) -> Result<VerifyingKey, ApiError> {
    key_from(settings, VerifyingKey::parse)
}

/// One of the keys derived from `jwt_signing_key`, parsed by `parse`.
fn key_from<K, E: std::fmt::Display>(
    settings: &TokenSettings,
    parse: impl FnOnce(&str) -> Result<K, E>,
) -> Result<K, ApiError> {
    let raw = settings
        .signing_key
        .as_deref()
        .ok_or(ApiError::NotConfigured(NO_SIGNING_KEY))?;
    parse(raw).map_err(|e| ApiError::Misconfigured(format!("variable `jwt_signing_key`: {e}")))
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

    /// Both checkers of one key: every test of the policy runs on both and they must agree
    /// (the fast check is compared with standard `verify_strict` on every token).
    struct Both {
        strict: VerifyingKey,
        fast: TokenKey,
    }

    impl Both {
        fn verify_access_token(
            &self,
            token: &str,
            settings: &TokenSettings,
        ) -> Result<Uuid, ApiError> {
            let strict = self.strict.verify_access_token(token, settings);
            let fast = self.fast.verify_access_token(token, settings);
            assert_eq!(format!("{strict:?}"), format!("{fast:?}"), "{token}");
            fast
        }
    }

    fn both(raw: &str) -> Both {
        Both {
            strict: VerifyingKey::parse(raw).unwrap(),
            fast: TokenKey::parse(raw).unwrap(),
        }
    }

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

    /// A token signed by ed25519-compact (an independent implementation) over any JSON.
    fn hand_signed(
        seed: [u8; 32],
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        let input = format!(
            "{}.{}",
            Base64UrlSafeNoPadding::encode_to_string(header.to_string()).unwrap(),
            Base64UrlSafeNoPadding::encode_to_string(claims.to_string()).unwrap()
        );
        let sig = kp.sk.sign(input.as_bytes(), None);
        format!(
            "{input}.{}",
            Base64UrlSafeNoPadding::encode_to_string(&sig[..]).unwrap()
        )
    }

    #[test]
    fn accepts_an_independently_signed_token_and_audience_arrays() {
        let now = now_seconds();
        let claims = serde_json::json!({"iss": "todo-api", "aud": ["x", "todo-api"],
            "sub": user().as_str(), "iat": now, "exp": now + 60});
        let token = hand_signed(
            [1u8; 32],
            &serde_json::json!({"alg": "EdDSA", "kid": "test-1"}),
            &claims,
        );
        let verifier = both(&test_key());
        assert_eq!(
            verifier.verify_access_token(&token, &settings()).unwrap(),
            user()
        );
    }

    #[test]
    fn rejects_every_policy_violation() {
        let now = now_seconds();
        let good_claims = serde_json::json!({"iss": "todo-api", "aud": "todo-api",
            "sub": user().as_str(), "iat": now, "exp": now + 60});
        let good_header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "test-1"});
        let verifier = both(&test_key());
        let check = |header: &serde_json::Value, claims: &serde_json::Value| {
            verifier.verify_access_token(&hand_signed([1u8; 32], header, claims), &settings())
        };
        assert!(check(&good_header, &good_claims).is_ok(), "control");

        let claims_without = |field: &str| {
            let mut c = good_claims.clone();
            c.as_object_mut().unwrap().remove(field);
            c
        };
        for missing in ["exp", "sub", "iss", "aud"] {
            assert!(
                check(&good_header, &claims_without(missing)).is_err(),
                "{missing}"
            );
        }
        let mut future = good_claims.clone();
        future["nbf"] = serde_json::json!(now + 3600);
        assert!(check(&good_header, &future).is_err(), "nbf in the future");
        let mut not_uuid = good_claims.clone();
        not_uuid["sub"] = serde_json::json!("admin");
        assert!(check(&good_header, &not_uuid).is_err(), "sub not a uuid");

        for header in [
            serde_json::json!({"alg": "HS256", "kid": "test-1"}),
            serde_json::json!({"alg": "none", "kid": "test-1"}),
            serde_json::json!({"alg": "EdDSA", "kid": "other"}),
            serde_json::json!({"alg": "EdDSA"}),
            serde_json::json!({"alg": "EdDSA", "kid": "test-1", "typ": "at+jwt"}),
            serde_json::json!({"alg": "EdDSA", "kid": "test-1", "crit": ["exp"]}),
        ] {
            assert!(check(&header, &good_claims).is_err(), "{header}");
        }

        let token = hand_signed([1u8; 32], &good_header, &good_claims);
        let parts: Vec<&str> = token.split('.').collect();
        for malformed in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.extra"),
            format!("{}.{}.", parts[0], parts[1]),
            format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]),
            "not a token".to_owned(),
            "x".repeat(5000),
        ] {
            assert!(
                verifier
                    .verify_access_token(&malformed, &settings())
                    .is_err(),
                "{malformed}"
            );
        }
    }

    fn settings() -> TokenSettings {
        TokenSettings {
            signing_key: Some(test_key()),
            issuer: "todo-api".into(),
            audience: "todo-api".into(),
        }
    }

    fn user() -> Uuid {
        Uuid::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap()
    }

    #[test]
    fn the_generation_travels_in_the_token() {
        let s = settings();
        let signer = SigningKey::parse(&test_key()).unwrap();
        let key = TokenKey::parse(&test_key()).unwrap();
        let token = signer.issue_access_token_at(&user(), 7, &s, 900).unwrap();
        let claims = key.verify_access_claims(&token, &s).unwrap();
        assert_eq!((claims.user, claims.generation), (user(), 7));
        // A token without the claim (issued before it existed) is generation 0.
        let now = now_seconds();
        let old = hand_signed(
            [1u8; 32],
            &serde_json::json!({"alg": "EdDSA", "kid": "test-1"}),
            &serde_json::json!({"iss": "todo-api", "aud": "todo-api", "sub": user().as_str(),
                                "iat": now, "exp": now + 60}),
        );
        assert_eq!(key.verify_access_claims(&old, &s).unwrap().generation, 0);
    }

    #[test]
    fn sign_then_verify() {
        let s = settings();
        let signer = SigningKey::parse(&test_key()).unwrap();
        let verifier = both(&test_key());
        let token = signer.issue_access_token(&user(), &s, 900).unwrap();
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
        let verifier = both(&test_key());
        let token = signer.issue_access_token(&user(), &s, 900).unwrap();

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
        let verifier = both(&test_key());
        let other = format!(
            "ed25519:test-1:{}",
            Base64UrlSafeNoPadding::encode_to_string(ed25519_compact_keypair([2u8; 32])).unwrap()
        );
        let token = SigningKey::parse(&other)
            .unwrap()
            .issue_access_token(&user(), &s, 900)
            .unwrap();
        assert!(verifier.verify_access_token(&token, &s).is_err());

        let now = now_seconds();
        let token = hand_signed(
            [1u8; 32],
            &serde_json::json!({"alg": "EdDSA", "kid": "test-1"}),
            &serde_json::json!({"iss": "todo-api", "aud": "todo-api", "sub": user().as_str(),
                                "iat": now - 7200, "exp": now - 3600}),
        );
        let err = verifier.verify_access_token(&token, &s).unwrap_err();
        assert!(matches!(err, ApiError::InvalidAccessToken("token expired")));
    }

    /// Replaces the signature of `token` with `signature`.
    fn with_signature(token: &str, signature: &[u8]) -> String {
        let input = &token[..token.rfind('.').unwrap()];
        format!(
            "{input}.{}",
            Base64UrlSafeNoPadding::encode_to_string(signature).unwrap()
        )
    }

    fn signature_of(token: &str) -> Vec<u8> {
        let sig = token.rsplit('.').next().unwrap();
        Base64UrlSafeNoPadding::decode_to_vec(sig, None).unwrap()
    }

    #[test]
    fn the_fast_check_rejects_forged_and_malleated_signatures() {
        let s = settings();
        let signer = SigningKey::parse(&test_key()).unwrap();
        let verifier = both(&test_key());
        let token = signer.issue_access_token(&user(), &s, 900).unwrap();
        let sig = signature_of(&token);

        // Every single-bit change of R or S: both checkers reject (Both asserts they agree).
        for bit in 0..512 {
            let mut forged = sig.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verifier
                    .verify_access_token(&with_signature(&token, &forged), &s)
                    .is_err(),
                "bit {bit}"
            );
        }

        // S + L: the same value mod L in a non-canonical encoding.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut plus_l = sig.clone();
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(plus_l[32 + i]) + u16::from(L[i]) + carry;
            plus_l[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(verifier
            .verify_access_token(&with_signature(&token, &plus_l), &s)
            .is_err());

        // The signature of one token on other claims (another user): rejected.
        let other = Uuid::parse("00000000-0000-0000-0000-000000000001").unwrap();
        let other_token = signer.issue_access_token(&other, &s, 900).unwrap();
        assert!(verifier
            .verify_access_token(&with_signature(&other_token, &sig), &s)
            .is_err());
        assert_eq!(verifier.verify_access_token(&token, &s).unwrap(), user());
    }

    #[test]
    fn the_fast_check_needs_the_seed_not_just_the_public_key() {
        // A variable whose public half is ours but whose seed is another: tokens our key
        // issued are rejected (the check recomputes S from the seed), as `auth` refuses to
        // sign with such a key at all.
        let s = settings();
        let token = SigningKey::parse(&test_key())
            .unwrap()
            .issue_access_token(&user(), &s, 900)
            .unwrap();
        let mut bytes = ed25519_compact_keypair([1u8; 32]);
        bytes[..32].copy_from_slice(&[2u8; 32]);
        let mismatched = format!(
            "ed25519:test-1:{}",
            Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
        );
        assert!(TokenKey::parse(&mismatched)
            .unwrap()
            .verify_access_token(&token, &s)
            .is_err());
        assert!(VerifyingKey::parse(&mismatched)
            .unwrap()
            .verify_access_token(&token, &s)
            .is_ok());
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
        let verifier = both(&key);
        let token = signer
            .issue_access_token(&user(), &settings(), 900)
            .unwrap();
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
