//! Shared plumbing of the local cloud: a local certificate authority, HTTPS serving, and the tokens its identity endpoint issues.
