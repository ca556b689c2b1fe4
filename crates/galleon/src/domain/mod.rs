//! Pure decisions of the publishing chain: naming, versioning, the manifest, policies, replication and
//! the spacing of looks at long operations.
//! No I/O here; each is a plain function with table tests.

pub mod builds;
pub mod distribution;
pub mod features;
pub mod looks;
pub mod manifest;
pub mod naming;
pub mod pace;
pub mod policy;
pub mod replicate_again;
pub mod replication;
pub mod resume;
pub mod retention;
pub mod runs;
pub mod sharing;
pub mod tags;
