//! Access tokens: the bearer token is the first thing an anonymous client controls on every
//! authenticated route.

use arbitrary::{Arbitrary, Unstructured};
use common::config::TokenSettings;
use common::domain::Uuid;
use common::tokens::{SigningKey, TokenKey, VerifyingKey};
use ct_codecs::{Base64UrlSafeNoPadding, Encoder as _};
use std::sync::OnceLock;

struct Keys {
    settings: TokenSettings,
    verifying: VerifyingKey,
    checking: TokenKey,
    genuine: String,
}

/// A fixed key (seed 32 × 0x2a, made for this target only) and one genuine token.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x2a; 32]));
        let raw = format!(
            "ed25519:fuzz-1:{}",
            Base64UrlSafeNoPadding::encode_to_string(&pair[..]).expect("base64")
        );
        let settings = TokenSettings {
            signing_key: Some(raw.clone()),
            issuer: "todo-api".into(),
            audience: "todo-api".into(),
        };
        let signing = SigningKey::parse(&raw).expect("signing key");
        let user = Uuid::parse("00000000-0000-4000-8000-000000000001").expect("uuid");
        let genuine = signing
            .issue_access_token(&user, &settings, 900)
            .expect("a token");
        Keys {
            verifying: VerifyingKey::parse(&raw).expect("verifying key"),
            checking: TokenKey::parse(&raw).expect("token key"),
            settings,
            genuine,
        }
    })
}

/// Either a token made of the input, or the genuine token with input-chosen edits. The two
/// checkers the components use (signature verification, and the signing key's own
/// recomputation) must agree on every token, refuse it with 401, and accept an edited
/// token only if the edit changed nothing.
pub fn access_token(data: &[u8]) {
    #[derive(Arbitrary, Debug)]
    enum Input {
        Raw(String),
        Edited(Vec<(u16, u8)>),
    }
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let keys = keys();
    let token = match input {
        Input::Raw(text) => text,
        Input::Edited(edits) => {
            let mut bytes = keys.genuine.clone().into_bytes();
            for (at, byte) in edits.into_iter().take(8) {
                let at = usize::from(at) % bytes.len();
                bytes[at] = byte;
            }
            match String::from_utf8(bytes) {
                Ok(token) => token,
                Err(_) => return,
            }
        }
    };
    let verified = keys.verifying.verify_access_token(&token, &keys.settings);
    let checked = keys.checking.verify_access_token(&token, &keys.settings);
    assert_eq!(
        verified.is_ok(),
        checked.is_ok(),
        "checkers disagree on {token:?}: {verified:?} / {checked:?}"
    );
    match verified {
        Ok(_) => assert_eq!(token, keys.genuine, "accepted a token we never issued"),
        Err(err) => assert_eq!(err.status(), 401, "{token:?} gave {err}"),
    }
}
