//! Shared test support for dc-rootca.
