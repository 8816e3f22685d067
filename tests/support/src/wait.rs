//! Waiting for a state change with a bound, never sleeping and hoping.

use std::time::{Duration, Instant};

use anyhow::Result;

/// Polls `check` every 100 ms until it returns `Ok`, or fails with the last error once
/// `limit` has passed. Use it instead of sleeping when waiting for a state change.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {e:#}", limit.as_secs_f32())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Polls `check` every 20 ms until it holds or `limit` has passed; true when it held.
/// For synchronous tests, e.g. waiting for a line of host output.
pub fn poll_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
