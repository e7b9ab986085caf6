//! Which controller to ask, with several behind one database (`--dcmanager-url a,b`): one leads and
//! takes changes, the others are standbys that serve reads and answer changes 503 naming the leader
//! (`X-Leader-Url`). A request goes to each URL in turn, moves on from one it cannot connect to, and
//! follows a 503's leader once; nothing loops, since every URL is tried at most once more than the
//! list names.

use crate::client::ClientError;

/// The URLs of `--dcmanager-url` / `DCMANAGER_URL`: comma-separated, blanks dropped, each without a
/// trailing `/`.
pub fn parse_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The leader's base URL for a request that went to `base`: the leader advertises its API's root
/// (`https://ctl-b:8119`), and `base` may end in a path (`/v1.0`) that goes with it.
pub fn rebase(base: &str, leader: &str) -> String {
    let leader = leader.trim_end_matches('/');
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let path = base[after_scheme..]
        .find('/')
        .map_or("", |i| &base[after_scheme + i..]);
    if path.is_empty() || leader.ends_with(path) {
        leader.to_owned()
    } else {
        format!("{leader}{path}")
    }
}

/// What to do after an attempt failed with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try the next URL: this one took no connection, or is a standby that knows no leader.
    MoveOn,
    /// Send it to the leader this standby named (once per request).
    Follow(String),
    /// The answer is final: show it.
    Stop,
}

/// The choice after `error`, `followed` saying whether this request already followed a leader. A
/// request that may have reached a controller is never sent to another unless it was refused with
/// 503 (a standby changes nothing), so a change is never made twice.
pub fn next(error: &ClientError, followed: bool) -> Next {
    match error {
        ClientError::NoConnection { .. } => Next::MoveOn,
        ClientError::Api {
            status: 503,
            leader: Some(url),
            ..
        } if !followed => Next::Follow(url.clone()),
        ClientError::Api { status: 503, .. } => Next::MoveOn,
        _ => Next::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, leader: Option<&str>) -> ClientError {
        ClientError::Api {
            status,
            message: "m".into(),
            leader: leader.map(str::to_owned),
        }
    }

    #[test]
    fn the_list_is_split_on_commas_and_trimmed() {
        assert_eq!(
            parse_urls(" http://a:1/v1.0/ ,http://b:2/v1.0,,"),
            vec!["http://a:1/v1.0", "http://b:2/v1.0"]
        );
        assert_eq!(parse_urls("http://a"), vec!["http://a"]);
        assert!(parse_urls(" , ").is_empty());
    }

    #[test]
    fn the_leaders_url_keeps_the_requests_base_path() {
        assert_eq!(rebase("http://a:1/v1.0", "http://b:2"), "http://b:2/v1.0");
        assert_eq!(
            rebase("http://a:1/v1.0", "http://b:2/v1.0/"),
            "http://b:2/v1.0"
        );
        assert_eq!(rebase("https://a:1", "https://b:2/"), "https://b:2");
    }

    #[test]
    fn a_refused_connection_moves_on_and_a_named_leader_is_followed_once() {
        let refused = ClientError::NoConnection {
            url: "u".into(),
            reason: "Connection refused".into(),
        };
        assert_eq!(next(&refused, false), Next::MoveOn);
        assert_eq!(next(&refused, true), Next::MoveOn);
        assert_eq!(
            next(&api(503, Some("http://b:2")), false),
            Next::Follow("http://b:2".into())
        );
        // Followed already: no second hop, the next URL in the list instead.
        assert_eq!(next(&api(503, Some("http://b:2")), true), Next::MoveOn);
        // A standby that knows no leader: another URL may lead.
        assert_eq!(next(&api(503, None), false), Next::MoveOn);
    }

    #[test]
    fn an_answer_that_may_have_changed_something_is_final() {
        // The request may have reached a controller: sending it elsewhere could make a change twice.
        let cut = ClientError::Unreachable {
            url: "u".into(),
            reason: "timeout".into(),
        };
        assert_eq!(next(&cut, false), Next::Stop);
        assert_eq!(next(&api(500, None), false), Next::Stop);
        assert_eq!(next(&api(422, None), false), Next::Stop);
        assert_eq!(next(&api(401, Some("http://b:2")), false), Next::Stop);
    }
}
