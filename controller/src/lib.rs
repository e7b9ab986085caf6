//! The dc-rootca controller (see issue 4).
