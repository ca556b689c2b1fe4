//! Pure decisions of the publishing chain: naming, versioning and policies. No I/O here; each is a plain
//! function with table tests.

pub mod naming;
