//! Pure decisions of the publishing chain: naming, versioning, the manifest, policies and replication.
//! No I/O here; each is a plain function with table tests.

pub mod manifest;
pub mod naming;
pub mod policy;
pub mod replication;
