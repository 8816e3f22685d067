//! Abuse resistance (issue 13): login throttling that others cannot turn into a lockout,
//! the password policy, revocation of access tokens, and cheap logins.
//!
//! Clients at other addresses are real: the host takes `spin-client-addr` from the TCP
//! peer (and drops any `spin-*` header a client sends), so these tests bind their sockets
//! to other loopback addresses (`127.0.0.0/8` is all local on Linux).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::api::{new_user, spawn_api, Reply};
use crate::harness::{HostOptions, TestApp};

/// A client whose connections come from `ip` (a loopback address other than 127.0.0.1).
fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().expect("an IP address");
    reqwest::Client::builder()
        .local_address(ip)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client with static settings builds")
}

/// `POST /auth/login` from `ip`.
async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password});
    Reply::send(client_from(ip).post(app.url("/auth/login")).json(&body)).await
}

/// Asserts a 429 from the login throttle whose `Retry-After` is within `max_wait` seconds.
fn refused(reply: Reply, max_wait: u64) {
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..=max_wait).contains(&retry_after),
        "Retry-After {retry_after}, expected 1..={max_wait}"
    );
    reply.problem(429, "rate-limited");
}

const WRONG: &str = "not the password";

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn wrong_passwords_from_other_addresses_do_not_lock_the_user_out() {
    // Pair limit 3 per 15 minutes; the username guard out of the way (next test).
    let app = spawn_api(Some(
        HostOptions::new()
            .variable("rate_limit_login_pair", "3/900")
            .variable("rate_limit_login_username", "1000/3600"),
    ))
    .await;
    let user = new_user(&app).await; // registered and logged in from 127.0.0.1

    // 12 wrong passwords from four other addresses: each is evaluated (401)...
    let attackers = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    for ip in attackers {
        for _ in 0..3 {
            login_from(&app, ip, &user.username, WRONG)
                .await
                .problem(401, "invalid-credentials");
        }
    }
    // ...and then each attacker address is refused for this username, even with the
    // right password (its own budget is used up, before any hashing).
    for ip in attackers {
        refused(login_from(&app, ip, &user.username, WRONG).await, 900);
    }
    refused(
        login_from(&app, "127.0.0.2", &user.username, &user.password).await,
        900,
    );

    // The real user's address is not: the right password works, from the address they
    // used before and from one never seen.
    for ip in ["127.0.0.1", "127.0.0.9"] {
        let tokens = login_from(&app, ip, &user.username, &user.password)
            .await
            .expect_status(200);
        assert!(tokens["access_token"].is_string(), "{tokens}");
    }
    // The attacker's pair counts per username: the same address may still log in as
    // another user.
    let other = new_user(&app).await;
    login_from(&app, "127.0.0.2", &other.username, &other.password)
        .await
        .expect_status(200);
}

#[tokio::test]
#[ignore = "starts an edge-host of its own, so not under BASE_URL (run through scripts/test)"]
async fn the_username_guard_delays_unknown_addresses_and_never_refuses_a_first_try() {
    // The guard engages after 5 failures for the username from anywhere.
    let app = spawn_api(Some(
        HostOptions::new()
            .variable("rate_limit_login_pair", "100/900")
            .variable("rate_limit_login_username", "5/3600")
            .variable("login_guard_interval_seconds", "300"),
    ))
    .await;
    let user = new_user(&app).await; // 127.0.0.1 is now known for this username

    for _ in 0..5 {
        login_from(&app, "127.0.0.2", &user.username, WRONG)
            .await
            .problem(401, "invalid-credentials");
    }
    // Guard engaged: the attacker's address gets one evaluated try per interval.
    login_from(&app, "127.0.0.2", &user.username, WRONG)
        .await
        .problem(401, "invalid-credentials");
    refused(
        login_from(&app, "127.0.0.2", &user.username, WRONG).await,
        300,
    );

    // The known address is unaffected, wrong password or right.
    login_from(&app, "127.0.0.1", &user.username, WRONG)
        .await
        .problem(401, "invalid-credentials");
    login_from(&app, "127.0.0.1", &user.username, &user.password)
        .await
        .expect_status(200);
    // A new address: the first try is evaluated, so the right password works...
    login_from(&app, "127.0.0.3", &user.username, &user.password)
        .await
        .expect_status(200);
    // ...and after a typo from another new address the right one waits (a delay, with
    // Retry-After, not a lockout).
    login_from(&app, "127.0.0.4", &user.username, WRONG)
        .await
        .problem(401, "invalid-credentials");
    refused(
        login_from(&app, "127.0.0.4", &user.username, &user.password).await,
        300,
    );
    // 127.0.0.3 logged in successfully, so it is known now: no delay for it.
    login_from(&app, "127.0.0.3", &user.username, WRONG)
        .await
        .problem(401, "invalid-credentials");
    login_from(&app, "127.0.0.3", &user.username, &user.password)
        .await
        .expect_status(200);
}
