//! The rules a *new* password (registration, password change) must meet, beyond its
//! length (8–128 characters, [`crate::domain::Password`]). Logging in only checks the
//! length, so accounts made before a rule existed can still log in.
//!
//! Refused, with the reason in the 422's field error (in this order):
//! - control characters (`char::is_control`: NUL, the other C0/C1 codes, DEL);
//! - only whitespace;
//! - one character repeated (`aaaaaaaa`);
//! - equal to or containing the username, the e-mail address, or the e-mail's local part
//!   (when it has at least 4 characters), ignoring case;
//! - one of the most common passwords (`crate::common_passwords`: the 3,395 entries of 8+
//!   characters among the 10,000 most common, from the `zxcvbn` crate's list), ignoring
//!   case.
//!
//! Why a shipped list and not a strength estimator: the `zxcvbn` crate (3.1.1) would do
//! more, but on `wasm32` it depends on `wasm-bindgen`/`web-sys` (a browser target, not
//! WASI), pulls in `regex` and `fancy-regex`, adds about 800 KB of word lists, and builds
//! its ranked dictionaries (about 90,000 `HashMap` entries) lazily on first use: in a fresh
//! instance per request, that construction would be paid by every registration. The
//! list here is 32 KB of text (about 56 KB of source, a `&[&str]` of 3,395 entries in the
//! binary), looked up by binary search: 12 comparisons, well under a microsecond.
//!
//! Regenerating the list: take the comma-separated `PASSWORDS` constant of
//! `zxcvbn-3.1.1/src/frequency_lists.rs`, keep the first 10,000, drop those shorter than
//! 8 characters, lower-case, de-duplicate, sort by bytes.

use crate::common_passwords::COMMON_PASSWORDS;

/// Shortest e-mail local part that a password may not contain.
const MIN_LOCAL_PART: usize = 4;

/// Checks a new password (whose length is already valid) against the rules above for the
/// account's `username` and `email` (either may be unknown, e.g. invalid in the same
/// request). `Err` is the field message.
pub fn check(password: &str, username: Option<&str>, email: Option<&str>) -> Result<(), String> {
    if password.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if password.chars().all(char::is_whitespace) {
        return Err("must not be only whitespace".into());
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Err("must not be one character repeated".into());
        }
    }
    let lower = password.to_lowercase();
    if let Some(username) = username.map(str::to_lowercase) {
        if !username.is_empty() && lower.contains(&username) {
            return Err("must not contain the username".into());
        }
    }
    if let Some(email) = email.map(str::to_lowercase) {
        let local = email.split('@').next().unwrap_or("");
        if (!email.is_empty() && lower.contains(&email))
            || (local.chars().count() >= MIN_LOCAL_PART && lower.contains(local))
        {
            return Err("must not contain the e-mail address".into());
        }
    }
    if is_common(&lower) {
        return Err("is one of the most common passwords; choose a less guessable one".into());
    }
    Ok(())
}

/// Whether `lower` (already lower-cased) is on the shipped list.
fn is_common(lower: &str) -> bool {
    COMMON_PASSWORDS
        .binary_search_by(|entry| entry.as_bytes().cmp(lower.as_bytes()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(password: &str) -> String {
        check(password, Some("alice_92"), Some("alice.smith@example.com")).unwrap_err()
    }

    #[test]
    fn the_list_is_sorted_unique_lower_case_and_long_enough() {
        assert!(COMMON_PASSWORDS.len() > 3000);
        assert!(COMMON_PASSWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(COMMON_PASSWORDS
            .iter()
            .all(|p| p.chars().count() >= 8 && p.to_lowercase() == *p));
    }

    #[test]
    fn the_issue_s_weak_passwords_are_refused_with_a_reason() {
        assert!(reason("password").contains("common"));
        assert!(reason("PassWord").contains("common"), "case is ignored");
        assert!(reason("12345678").contains("common"));
        assert!(reason("iloveyou").contains("common"));
        assert!(reason("aaaaaaaa").contains("repeated"));
        assert!(reason("        ").contains("whitespace"));
        assert!(
            reason("\t \n  \u{a0}  ").contains("control"),
            "tab is control"
        );
        assert!(reason(&"\0".repeat(8)).contains("control"));
        assert!(reason("good pass\u{7f}word").contains("control"));
        assert!(reason("alice_92").contains("username"));
        assert!(reason("my ALICE_92 pw").contains("username"));
        assert!(reason("alice.smith@example.com").contains("e-mail"));
        assert!(reason("xx alice.smith yy").contains("e-mail"));
        assert!(reason("\u{a0}\u{2003}\u{a0}\u{2003}  \u{3000} ").contains("whitespace"));
    }

    #[test]
    fn reasonable_passwords_pass() {
        for ok in [
            "correct horse battery",
            "Tr0ub4dor&3x",
            "ééééééé1",
            "alice in wonderland 2",
        ] {
            assert_eq!(
                check(ok, Some("alice_92"), Some("alice.smith@example.com")),
                Ok(()),
                "{ok}"
            );
        }
        // A short local part is not a rule ("bob" may appear in a password).
        assert_eq!(
            check("bobsled racing", None, Some("bob@example.com")),
            Ok(())
        );
        assert!(check("password", None, None).is_err());
    }
}
