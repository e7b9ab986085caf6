//! Which database the benchmarked controller runs on, decided from the command line before anything
//! starts: SQLite (the default), a throwaway PostgreSQL the run starts for itself, or a PostgreSQL
//! server named by URL. A failover needs two controllers on one database, so PostgreSQL.

use std::path::PathBuf;

/// `--database`'s spelling for a PostgreSQL the run starts (initdb, TLS, loopback, commits flushed to
/// disk) and removes.
pub const THROWAWAY: &str = "throwaway-postgres";

/// What a bad combination of `--database`, `--database-ca` and `--failover` is.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error(
        "--database takes \"sqlite\", \"{THROWAWAY}\" or a postgresql:// URL, not \"{0}\" (a SQLite \
         file is the default, in the state directory)"
    )]
    Unknown(String),
    #[error(
        "--database-ca names the CA of a PostgreSQL server's certificate: it needs a postgresql:// --database"
    )]
    CaWithoutServer,
    #[error(
        "--failover runs two controllers on one database, which needs PostgreSQL: add --database \
         {THROWAWAY} (or a postgresql:// URL)"
    )]
    FailoverNeedsPostgres,
    #[error(
        "--failover-at is the percentage of steps complete when the leader is killed: 1 to 99, not {0}"
    )]
    FailoverAt(u8),
}

/// The database a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `controller.sqlite` in the state directory.
    Sqlite,
    /// A PostgreSQL the run starts through `dc_test_support::postgres` and removes at its end.
    Throwaway,
    /// A PostgreSQL server (an empty database: the run registers its own subclouds).
    Server { url: String, ca: Option<PathBuf> },
}

impl Database {
    /// Validates the database options together (`failover_at` only matters with `failover`).
    pub fn choose(
        database: Option<&str>,
        ca: Option<PathBuf>,
        failover: bool,
        failover_at: u8,
    ) -> Result<Self, ChoiceError> {
        let chosen = match database {
            None | Some("sqlite") => Self::Sqlite,
            Some(THROWAWAY) => Self::Throwaway,
            Some(url) if url.starts_with("postgresql://") || url.starts_with("postgres://") => {
                Self::Server {
                    url: url.to_owned(),
                    ca: ca.clone(),
                }
            }
            Some(other) => return Err(ChoiceError::Unknown(other.to_owned())),
        };
        if ca.is_some() && !matches!(chosen, Self::Server { .. }) {
            return Err(ChoiceError::CaWithoutServer);
        }
        if failover && chosen == Self::Sqlite {
            return Err(ChoiceError::FailoverNeedsPostgres);
        }
        if failover && !(1..=99).contains(&failover_at) {
            return Err(ChoiceError::FailoverAt(failover_at));
        }
        Ok(chosen)
    }

    /// How the figures name it: never with a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite => "sqlite".to_owned(),
            Self::Throwaway => format!("postgresql ({THROWAWAY}, loopback, TLS, fsync on)"),
            Self::Server { url, .. } => format!("postgresql ({})", without_password(url)),
        }
    }
}

/// `url` with the password of its user info (`user:password@`) replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// How many steps must be complete before the leader is killed: `percent` of `steps`, at least one,
/// and short of all of them (a failover after the last step would show nothing resumed).
pub fn kill_after(steps: usize, percent: u8) -> usize {
    (steps * usize::from(percent))
        .div_ceil(100)
        .clamp(1, steps.saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_the_default_and_takes_no_ca_and_no_failover() {
        assert_eq!(
            Database::choose(None, None, false, 50),
            Ok(Database::Sqlite)
        );
        assert_eq!(
            Database::choose(Some("sqlite"), None, false, 50),
            Ok(Database::Sqlite)
        );
        assert_eq!(
            Database::choose(None, Some("ca.pem".into()), false, 50),
            Err(ChoiceError::CaWithoutServer)
        );
        assert_eq!(
            Database::choose(None, None, true, 50),
            Err(ChoiceError::FailoverNeedsPostgres)
        );
    }

    #[test]
    fn a_throwaway_postgres_fails_over_but_has_its_own_ca() {
        assert_eq!(
            Database::choose(Some(THROWAWAY), None, true, 50),
            Ok(Database::Throwaway)
        );
        assert_eq!(
            Database::choose(Some(THROWAWAY), Some("ca.pem".into()), false, 50),
            Err(ChoiceError::CaWithoutServer)
        );
    }

    #[test]
    fn a_server_url_keeps_its_ca_and_anything_else_is_refused() {
        let url = "postgresql://dc@db:5432/dc?sslmode=require";
        assert_eq!(
            Database::choose(Some(url), Some("ca.pem".into()), true, 50),
            Ok(Database::Server {
                url: url.to_owned(),
                ca: Some("ca.pem".into())
            })
        );
        assert_eq!(
            Database::choose(Some("mysql://db/dc"), None, false, 50),
            Err(ChoiceError::Unknown("mysql://db/dc".into()))
        );
    }

    #[test]
    fn the_kill_point_is_a_percentage_from_1_to_99() {
        assert_eq!(
            Database::choose(Some(THROWAWAY), None, true, 0),
            Err(ChoiceError::FailoverAt(0))
        );
        assert_eq!(
            Database::choose(Some(THROWAWAY), None, true, 100),
            Err(ChoiceError::FailoverAt(100))
        );
        // Without --failover the percentage is not used, so not checked.
        assert!(Database::choose(Some(THROWAWAY), None, false, 0).is_ok());
    }

    #[test]
    fn figures_name_the_database_without_its_password() {
        let server = |url: &str| Database::Server {
            url: url.to_owned(),
            ca: None,
        };
        assert_eq!(
            server("postgresql://dc:s3cret@db:5432/dc?sslmode=require").describe(),
            "postgresql (postgresql://dc:***@db:5432/dc?sslmode=require)"
        );
        assert_eq!(
            server("postgresql://dc@db/dc").describe(),
            "postgresql (postgresql://dc@db/dc)"
        );
        assert_eq!(Database::Sqlite.describe(), "sqlite");
    }

    #[test]
    fn the_leader_dies_with_steps_left_whatever_the_fleet_size() {
        assert_eq!(kill_after(1000, 50), 500);
        assert_eq!(kill_after(20, 50), 10);
        assert_eq!(kill_after(3, 50), 2);
        assert_eq!(kill_after(2, 99), 1);
        assert_eq!(kill_after(1, 50), 1);
        assert_eq!(kill_after(10, 1), 1);
    }
}
