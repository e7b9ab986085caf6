//! The dc-rootca agent (see issue 3).
