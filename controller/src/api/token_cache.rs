//! Keystone tokens already validated, so that most requests need no round trip to Keystone. A token is
//! kept until the earlier of its own expiry and the configured TTL: the TTL bounds how long a token
//! revoked in Keystone is still taken. Bounded: when full, expired entries go first, then the one
//! closest to expiry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The validated tokens and what Keystone said of each (`V`: the role, or none).
#[derive(Debug)]
pub struct TokenCache<V> {
    entries: HashMap<String, Entry<V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    until: Instant,
}

impl<V: Clone> TokenCache<V> {
    /// A cache of at most `capacity` tokens (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// What was recorded for `token`, while it may still be taken at `now`; an expired entry is dropped.
    pub fn get(&mut self, token: &str, now: Instant) -> Option<V> {
        match self.entries.get(token) {
            Some(e) if now < e.until => Some(e.value.clone()),
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    /// Records `token` until `until`, making room when full.
    pub fn insert(&mut self, token: &str, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        if !self.entries.contains_key(token) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.until);
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries
            .insert(token.to_owned(), Entry { value, until });
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Until when a token validated at `now` may be taken without asking Keystone again: never past its own
/// expiry (`remaining`, from Keystone's `expires_at`), and never longer than `ttl`.
pub fn keep_until(now: Instant, remaining: Duration, ttl: Duration) -> Instant {
    now + remaining.min(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_token_is_kept_until_the_earlier_of_its_expiry_and_the_ttl() {
        let now = Instant::now();
        assert_eq!(keep_until(now, 3600 * S, 60 * S), now + 60 * S);
        assert_eq!(keep_until(now, 10 * S, 60 * S), now + 10 * S);
        assert_eq!(keep_until(now, Duration::ZERO, 60 * S), now);
    }

    #[test]
    fn an_entry_is_taken_until_its_time_then_dropped() {
        let now = Instant::now();
        let mut cache = TokenCache::new(4);
        cache.insert("t", 'a', now + 5 * S, now);
        assert_eq!(cache.get("t", now + 4 * S), Some('a'));
        assert_eq!(cache.get("t", now + 5 * S), None);
        assert!(cache.is_empty(), "an expired entry is dropped when met");
        assert_eq!(cache.get("other", now), None);
        cache.insert("gone", 'b', now, now);
        assert!(cache.is_empty(), "nothing already expired is kept");
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_the_soonest_to_expire() {
        let now = Instant::now();
        let mut cache = TokenCache::new(2);
        cache.insert("old", 1, now + S, now);
        cache.insert("long", 2, now + 100 * S, now);
        cache.insert("new", 3, now + 50 * S, now + 2 * S);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("old", now), None, "the expired entry made room");
        cache.insert("newest", 4, now + 60 * S, now + 2 * S);
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get("new", now + 2 * S),
            None,
            "the soonest to expire made room"
        );
        assert_eq!(cache.get("long", now + 2 * S), Some(2));
        assert_eq!(cache.get("newest", now + 2 * S), Some(4));
        cache.insert("long", 5, now + 70 * S, now + 2 * S);
        assert_eq!(cache.len(), 2, "a known token is replaced, not added");
        assert_eq!(cache.get("long", now + 2 * S), Some(5));
    }
}
