//! Password hashing with argon2id (RustCrypto `argon2`).
//!
//! Parameters: m = 19 MiB (19456 KiB), t = 2, p = 1: the OWASP Password Storage Cheat
//! Sheet's recommended minimum for argon2id. Why the minimum: every request runs in a
//! fresh WebAssembly instance without SIMD or threads, so the whole hash is paid inside the
//! login/register latency and the 19 MiB is grown and zeroed per request; higher settings
//! would multiply both.
//!
//! Measured cost (2026-12, this 2-core machine, `wasm32-wasip2` release components on
//! edge-host, idle machine): one pass is about **100 ms of guest CPU**. Twelve sequential
//! logins took 99–121 ms each (median 106 ms, the component's own `latency_ms`), a refresh
//! (the same route without argon2) 3–7 ms. So a core does about 9–10 logins per second, and
//! concurrent logins beyond the core count queue for CPU; no pooled PostgreSQL connection
//! is held meanwhile (`auth`'s login and password change check one out before and after
//! the hash; e2e `abuse::logins_hold_no_pooled_connection_while_hashing`). The parameters are stored in each PHC
//! hash string, so raising them later only affects new hashes.
//!
//! Timing: an unknown user is "verified" by hashing the given password with the same
//! parameters, so it costs the same as a wrong password for a real user.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;
use crate::error::ApiError;

/// Memory cost in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

fn hasher() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &Password) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let hashed = hasher()?
        .hash_password_with_salt(password.expose(), &salt)
        .map_err(|e| ApiError::Internal(format!("argon2 hash: {e}")))?;
    Ok(hashed.to_string())
}

/// Checks a password against a stored hash; with `None` (unknown user) it does the same
/// work against nothing and returns `false`.
pub fn verify(password: &Password, stored: Option<&str>) -> bool {
    let Ok(argon2) = hasher() else {
        return false;
    };
    match stored {
        Some(stored) => argon2.verify_password(password.expose(), stored).is_ok(),
        None => {
            // Same parameters, same single argon2 pass as a real verification.
            let _ = argon2.hash_password_with_salt(password.expose(), b"unknown-user-salt");
            false
        }
    }
}

/// The login decision: the user behind `credentials` (as the repository found them:
/// user and stored hash) when `password` matches, and otherwise the one
/// [`ApiError::InvalidCredentials`] whatever the cause (unknown user, wrong password, an
/// unreadable stored hash), after the same single argon2 pass, so neither the answer nor
/// its timing tells a client which usernames exist.
pub fn check_credentials<U>(
    password: &Password,
    credentials: Option<(U, String)>,
) -> Result<U, ApiError> {
    let stored = credentials.as_ref().map(|(_, hash)| hash.as_str());
    if !verify(password, stored) {
        return Err(ApiError::InvalidCredentials);
    }
    credentials
        .map(|(user, _)| user)
        .ok_or(ApiError::InvalidCredentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_problem_is_the_same_for_every_cause() {
        let right = Password::parse("correct horse battery").unwrap();
        let wrong = Password::parse("incorrect horse battery").unwrap();
        let stored = hash(&right).unwrap();
        assert_eq!(
            check_credentials(&right, Some(("ann", stored.clone()))).unwrap(),
            "ann"
        );
        let problem = |outcome: Result<&str, ApiError>| {
            serde_json::to_string(&outcome.unwrap_err().to_problem(Some("req"))).unwrap()
        };
        let unknown_user = problem(check_credentials(&right, None));
        let wrong_password = problem(check_credentials(&wrong, Some(("ann", stored))));
        let corrupt_hash = problem(check_credentials(
            &right,
            Some(("ann", "$argon2id$x".into())),
        ));
        assert_eq!(unknown_user, wrong_password);
        assert_eq!(unknown_user, corrupt_hash);
        assert!(unknown_user.contains("401"), "{unknown_user}");
    }

    #[test]
    fn hash_and_verify() {
        let pw = Password::parse("correct horse battery").unwrap();
        let stored = hash(&pw).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&pw, Some(&stored)));
        let wrong = Password::parse("incorrect horse").unwrap();
        assert!(!verify(&wrong, Some(&stored)));
        assert!(!verify(&pw, None));
        assert!(!verify(&pw, Some("not a phc string")));
        assert_ne!(stored, hash(&pw).unwrap(), "salts differ");
    }

    #[test]
    fn unknown_user_costs_about_as_much_as_a_wrong_password() {
        let pw = Password::parse("correct horse battery").unwrap();
        let stored = hash(&pw).unwrap();
        let wrong = Password::parse("wrong password!").unwrap();
        let time = |f: &dyn Fn() -> bool| {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                f();
            }
            start.elapsed()
        };
        let known = time(&|| verify(&wrong, Some(&stored)));
        let unknown = time(&|| verify(&wrong, None));
        let ratio = known.as_secs_f64() / unknown.as_secs_f64();
        assert!((0.33..3.0).contains(&ratio), "ratio {ratio}");
    }
}
