//! Per-request throttles counted in this node's memory: a flood of requests is not a flood
//! of commits. Only throttles keyed by the client (its address) live here; limits that
//! must hold across nodes (per account, per user) stay in the database
//! (`store::ratelimit`), written only when an attempt counts against them.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buckets counted in memory: each names the client, not an account.
const NODE_LOCAL: &[&str] = &[
    "lookup-ip:",
    "pay-ip:",
    "login-ip:",
    "link-ip:",
    "register:",
    "reset-ip:",
    "staff-login-ip:",
    "staff-mfa-ip:",
    "permit-lookup:",
    "licence-verify:",
    "fee-lookup:",
];

/// Entries kept before expired windows are swept.
const SWEEP_AT: usize = 50_000;

pub fn node_local(bucket: &str) -> bool {
    NODE_LOCAL.iter().any(|p| bucket.starts_with(p))
}

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, (i64, i64)>>,
    /// Set only by `strongroom bench` (its one client would be throttled at once);
    /// nothing in `serve`'s configuration can set it.
    lifted: std::sync::atomic::AtomicBool,
}

impl Limiter {
    pub fn lift_for_bench(&self) {
        self.lifted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn lifted(&self) -> bool {
        self.lifted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a hit in `bucket` at `now` in windows of `window_secs`; the hits so far in
    /// this window, this one included.
    pub fn hit(&self, bucket: &str, now: i64, window_secs: i64) -> i64 {
        let Ok(mut map) = self.buckets.lock() else {
            // A poisoned lock (a panic elsewhere) must not lift the limit: refuse.
            return i64::MAX;
        };
        if map.len() >= SWEEP_AT {
            map.retain(|_, (start, _)| now - *start < window_secs.max(3600));
        }
        let e = map.entry(bucket.to_owned()).or_insert((now, 0));
        if now - e.0 >= window_secs {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_window_and_only_client_buckets_are_local() {
        let l = Limiter::default();
        assert_eq!(l.hit("lookup-ip:1.2.3.4", 100, 60), 1);
        assert_eq!(l.hit("lookup-ip:1.2.3.4", 159, 60), 2);
        assert_eq!(l.hit("lookup-ip:5.6.7.8", 159, 60), 1);
        assert_eq!(l.hit("lookup-ip:1.2.3.4", 160, 60), 1, "a new window");
        assert!(node_local("pay-ip:1.2.3.4"));
        assert!(
            !node_local("login-user:abc"),
            "per-account limits are shared"
        );
        assert!(!node_local("reset-user:abc"));
    }
}
