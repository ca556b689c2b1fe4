//! Reads Virtual Hard Disk (VHD) images from their first and last sectors: footer, disk type, partition table.
//! Decides, before anything is written to Azure, whether a blob is a VHD Azure can take, reading only
//! the last 512 bytes and the first 64 KiB of a possibly multi-terabyte page blob.
//!
//! # Public API
//!
//! - [`inspect`]`(reader, blob_len, &expectations) -> Result<Inspection, InspectError<E>>`: the
//!   entry point. `reader` implements [`RangeRead`] (galleon's blob client; [`FileReader`],
//!   [`BytesReader`] and [`CountingReader`] here). [`InspectError::Read`]/[`InspectError::ShortRead`]
//!   are I/O trouble (retry: [`InspectError::is_retryable`]); [`InspectError::Rejected`] carries a
//!   [`Problem`] (bad input: reject, do not retry).
//! - [`check()`]`(&Evidence, &Expectations) -> Result<Inspection, Problem>`: the same decision,
//!   pure, from bytes already read.
//! - [`Problem`] `{ code: ProblemCode, message, fix }`: serializable, `Display` for logs. Codes:
//!   `BlobEmpty`, `NotAVhd`, `VhdxNotSupported`, `VhdIsDynamic`, `VhdIsDifferencing`,
//!   `VhdUnsupportedDiskType`, `VhdFooterChecksum`, `VhdTruncated`, `VhdFooterMissing`,
//!   `VhdSizeMismatch`, `VhdSizeNotAligned`, `VhdTooSmall`, `VhdTooLarge`, `PartitionTableInvalid`,
//!   `GenerationMismatch`, `FeatureNeedsGenerationV2`, `ArchitectureMismatch`,
//!   `DataDiskHasOsLayout`, `DuplicateLun`.
//! - [`Inspection`]: virtual size, parsed [`Footer`], [`PartitionScheme`], the generation to use
//!   (declared or detected) and notes.
//! - [`find_boot_loaders`]`(reader, &scheme, virtual_size) -> Result<LoaderScan, InspectError<E>>`:
//!   after [`inspect`], reads the EFI System Partition's FAT (at most [`ESP_READ_CAP`] bytes) and
//!   lists the removable-media loaders in `\EFI\BOOT` ([`Architecture`] x64 / Arm64 / x86), or says
//!   why it could not look ([`Unchecked`]).
//! - [`inspect_os_disk`]`(reader, blob_len, &expectations, security_type, declared_architecture)
//!   -> Result<OsDiskInspection, InspectError<E>>`: the whole OS disk preflight in one call
//!   (inspect, boot loaders, architecture declared/detected/default, the rules below).
//! - Feature rules ([`preflight`]): [`check_generation`] (Trusted Launch, confidential VM and
//!   Arm64 need V2 on a GPT disk with an ESP), [`check_architecture`] (declared architecture vs.
//!   the loaders found), [`inspect_data_disk`] / [`check_data_disk`] (a data disk: fixed,
//!   aligned, no OS layout), [`check_luns`].
//! - Building blocks: [`Footer::parse`], [`sniff()`], [`partition::parse`].
//!
//! # Example
//!
//! ```
//! use vhd::{BytesReader, Expectations, Generation, ProblemCode, inspect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // An 8 MiB blank disk with a fixed-VHD footer.
//! let blob = vhd::fixed_vhd_in_memory(vec![0u8; 8 << 20]);
//! let reader = BytesReader(blob.clone().into());
//! let mut expect = Expectations::new("images/blank.vhd");
//! expect.declared_generation = Some(Generation::V2);
//! let inspection = inspect(&reader, blob.len() as u64, &expect).await.expect("a fixed VHD");
//! assert_eq!(inspection.virtual_size, 8 << 20);
//!
//! // The same disk without its last byte is rejected with a reason and a fix.
//! let err = inspect(&reader, blob.len() as u64 - 1, &expect).await.unwrap_err();
//! let problem = err.problem().expect("a rejection, not an I/O error");
//! assert_eq!(problem.code, ProblemCode::VhdTruncated);
//! # }
//! ```

pub mod check;
pub mod esp;
pub mod fat;
pub mod footer;
pub mod partition;
pub mod preflight;
pub mod problem;
pub mod read;
pub mod sniff;

pub use check::{
    Evidence, Expectations, GenerationSource, HEAD_LEN, Inspection, Limits, check,
    fixed_vhd_in_memory,
};
pub use esp::{
    Architecture, BootLoader, ESP_READ_CAP, LoaderOutcome, LoaderScan, Unchecked, find_boot_loaders,
};
pub use fat::FatKind;
pub use footer::{DiskType, Footer, FooterError};
pub use partition::{Generation, PartitionScheme};
pub use preflight::{
    ArchitectureSource, OsDiskInspection, SecurityType, check_architecture, check_data_disk,
    check_generation, check_luns, inspect_data_disk, inspect_os_disk, os_layout,
};
pub use problem::{Problem, ProblemCode};
pub use read::{BytesReader, CountingReader, FileReader, InspectError, RangeRead, inspect};
pub use sniff::{Sniffed, sniff};
