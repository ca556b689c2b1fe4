//! The decision: given the blob's length, first bytes and last 512 bytes, accept it as a fixed VHD
//! Azure can take (with what was learnt about it) or reject it with a [`Problem`]. Pure, no I/O.

use serde::{Deserialize, Serialize};

use crate::footer::{self, COOKIE, DiskType, FOOTER_LEN, Footer};
use crate::partition::{self, Generation, PartitionError, PartitionScheme};
use crate::problem::{
    MIB, Names, Problem, ProblemCode, align_up_mib, bytes, convert_fix, thousands,
};
use crate::sniff::{Sniffed, sniff};

/// How many bytes from the start of the blob the checks look at: the MBR, the GPT header and 128
/// entries (LBA 0..33), and far enough for ISO 9660's signature at 0x8001.
pub const HEAD_LEN: u64 = 64 * 1024;

/// Size limits for the virtual disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub min_virtual_size: u64,
    pub max_virtual_size: u64,
}

impl Limits {
    /// Azure Compute Gallery with full replication: images under 2 TB (we allow up to 2 TiB).
    pub const FULL_REPLICATION: Self = Self {
        min_virtual_size: MIB,
        max_virtual_size: 2 << 40,
    };
    /// Shallow replication allows images up to 32 TB (32 TiB here).
    pub const SHALLOW_REPLICATION: Self = Self {
        min_virtual_size: MIB,
        max_virtual_size: 32 << 40,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::FULL_REPLICATION
    }
}

/// What the uploader said about the blob (from the manifest, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    /// The blob's name (or path); used to spell out fix commands.
    pub blob_name: String,
    /// `hyperVGeneration` declared in the manifest, if any.
    pub declared_generation: Option<Generation>,
    /// The manifest's override: accept a declared generation that contradicts the partition table
    /// (and a partition table we cannot read), noting it in the inspection.
    pub allow_generation_mismatch: bool,
    pub limits: Limits,
}

impl Expectations {
    /// No declared generation, no override, full-replication limits.
    pub fn new(blob_name: impl Into<String>) -> Self {
        Self {
            blob_name: blob_name.into(),
            declared_generation: None,
            allow_generation_mismatch: false,
            limits: Limits::default(),
        }
    }
}

/// The bytes the decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub blob_len: u64,
    /// The first `min(blob_len, HEAD_LEN)` bytes.
    pub head: &'a [u8],
    /// The last `min(blob_len, 512)` bytes.
    pub tail: &'a [u8],
    /// The GPT partition entries when the GPT header places them beyond `head`.
    pub gpt_entries: Option<&'a [u8]>,
}

/// Where the Hyper-V generation in an [`Inspection`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenerationSource {
    /// The manifest declared it.
    Declared,
    /// Nothing was declared; the partition table implies it.
    Detected,
    /// Nothing was declared and the partition table gives no single answer.
    Unknown,
}

/// An accepted fixed VHD and what was learnt about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub blob_len: u64,
    /// Bytes of the virtual disk (footer's current size) = blob_len - 512.
    pub virtual_size: u64,
    pub footer: Footer,
    pub partition_scheme: PartitionScheme,
    /// Generations the partition table can boot under (`None`: no opinion).
    pub bootable_generations: Option<Vec<Generation>>,
    /// The `hyperVGeneration` to use: the declared one, else the one the disk implies.
    pub generation: Option<Generation>,
    pub generation_source: GenerationSource,
    /// Things worth logging that did not cause a rejection (overrides used, …).
    pub notes: Vec<String>,
}

/// Accepts a fixed VHD or rejects the blob with a specific problem.
///
/// Order of checks: empty blob; the footer at the end (cookie, checksum, disk type); when there is
/// no footer, what the blob looks like instead (VHDX, dynamic VHD, QCOW2, …, a cut-off footer, a
/// raw disk); then sizes (virtual size + 512 = blob length, minimum, maximum, 1 MiB alignment);
/// then the partition table and the declared generation.
pub fn check(ev: &Evidence<'_>, ex: &Expectations) -> Result<Inspection, Problem> {
    let names = Names::from_blob(&ex.blob_name);
    if ev.blob_len == 0 {
        return Err(Problem::new(
            ProblemCode::BlobEmpty,
            "The blob is empty (0 bytes).",
            format!(
                "Upload the VHD again: `azcopy copy {} '<blob URL>' --blob-type PageBlob`, and check \
                 the upload finished without errors.",
                names.input
            ),
        ));
    }
    let footer = <&[u8; FOOTER_LEN]>::try_from(ev.tail)
        .ok()
        .and_then(|b| Footer::parse(b).ok());
    match footer {
        Some(f) if f.checksum_ok() => match f.disk_type {
            DiskType::Fixed => check_fixed(ev, ex, &names, f),
            DiskType::Dynamic | DiskType::Differencing => Err(sparse_problem(
                &names,
                f.disk_type,
                Some(f.current_size),
                "its footer says so",
            )),
            other => Err(Problem::new(
                ProblemCode::VhdUnsupportedDiskType,
                format!(
                    "The VHD footer's disk type is {} ({other:?}); Azure takes only fixed VHDs (type 2).",
                    other.as_u32()
                ),
                convert_fix(&names, Some("vpc"), Some(f.current_size)),
            )),
        },
        Some(f) => match sniff(ev.head) {
            Some(Sniffed::SparseVhd {
                disk_type,
                virtual_size,
            }) => Err(sparse_problem(
                &names,
                disk_type,
                Some(virtual_size),
                "its header copy at offset 0 and dynamic header `cxsparse` at 512 say so; its end \
                 footer's checksum is also wrong",
            )),
            _ => Err(Problem::new(
                ProblemCode::VhdFooterChecksum,
                format!(
                    "The VHD footer's checksum is {:#010x} but its bytes give {:#010x}: the footer was \
                     damaged or edited (it says virtual size {}, disk type {:?}).",
                    f.checksum,
                    f.computed_checksum,
                    bytes(f.current_size),
                    f.disk_type
                ),
                format!(
                    "Upload the VHD again from the original file, and check the file itself first \
                     (`qemu-img check -f vpc {}`). If the original is damaged, recreate it with \
                     `qemu-img convert -O vpc -o subformat=fixed,force_size <source> {}`.",
                    names.input, names.output
                ),
            )),
        },
        None => Err(no_footer(ev, &names)),
    }
}

fn sparse_problem(
    names: &Names,
    disk_type: DiskType,
    virtual_size: Option<u64>,
    how: &str,
) -> Problem {
    let (code, what, extra) = if disk_type == DiskType::Differencing {
        (
            ProblemCode::VhdIsDifferencing,
            "a differencing VHD",
            " Run it where its parent VHD is next to it, so the result contains the parent's data.",
        )
    } else {
        (ProblemCode::VhdIsDynamic, "a dynamic (sparse) VHD", "")
    };
    let size = virtual_size
        .map(|s| format!(" Its virtual size is {}.", bytes(s)))
        .unwrap_or_default();
    Problem::new(
        code,
        format!("The blob is {what} ({how}); Azure accepts only fixed-size VHDs.{size}"),
        format!("{}{extra}", convert_fix(names, Some("vpc"), virtual_size)),
    )
}

/// No valid footer at the end: say what the blob is instead.
fn no_footer(ev: &Evidence<'_>, names: &Names) -> Problem {
    match sniff(ev.head) {
        Some(Sniffed::Vhdx) => {
            return Problem::new(
                ProblemCode::VhdxNotSupported,
                "The blob is a VHDX image (`vhdxfile` at offset 0); Azure accepts only fixed-size VHD, not VHDX.",
                format!(
                    "{} On Hyper-V: `Convert-VHD -Path {} -DestinationPath {} -VHDType Fixed`.",
                    convert_fix(names, Some("vhdx"), None),
                    names.input,
                    names.output
                ),
            );
        }
        Some(Sniffed::SparseVhd {
            disk_type,
            virtual_size,
        }) => {
            return sparse_problem(
                names,
                disk_type,
                Some(virtual_size),
                "a footer copy at offset 0 and the dynamic header `cxsparse` at 512; its end footer is missing",
            );
        }
        Some(Sniffed::Text) => {
            return Problem::new(
                ProblemCode::NotAVhd,
                format!(
                    "The blob is a text file ({}, starting {:?}), not a VHD.",
                    bytes(ev.blob_len),
                    String::from_utf8_lossy(&ev.head[..ev.head.len().min(40)])
                ),
                format!(
                    "Upload the disk image itself as {}: a fixed VHD made with `qemu-img convert -O vpc \
                     -o subformat=fixed,force_size <disk> {}`.",
                    names.input, names.output
                ),
            );
        }
        Some(other) => {
            let fix = match other.qemu_format() {
                Some(fmt) => convert_fix(names, Some(fmt), None),
                None => format!(
                    "Unpack the disk image from it, convert that to a fixed VHD (`qemu-img convert -O vpc \
                     -o subformat=fixed,force_size <disk> {}`) and upload the result.",
                    names.output
                ),
            };
            return Problem::new(
                ProblemCode::NotAVhd,
                format!(
                    "The blob is {} ({}), not a VHD: it has no VHD footer.",
                    other.describe(),
                    bytes(ev.blob_len)
                ),
                fix,
            );
        }
        None => {}
    }
    // A footer cut off by the end of the blob: the cookie starts k bytes into the last 512.
    if let Some(k) = (1..ev.tail.len()).find(|&k| ev.tail[k..].starts_with(COOKIE)) {
        let present = ev.tail.len() - k;
        let missing = FOOTER_LEN - present;
        let declared = ev
            .tail
            .get(k + 48..k + 56)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .map(|size| {
                format!(
                    " The footer's virtual size is {}, so the whole VHD is {} bytes; the blob has {}.",
                    bytes(size),
                    thousands(size.saturating_add(512)),
                    thousands(ev.blob_len)
                )
            })
            .unwrap_or_default();
        return Problem::new(
            ProblemCode::VhdTruncated,
            format!(
                "The blob ends inside the VHD footer: the footer starts at byte {} but only {present} of \
                 its 512 bytes are there ({missing} missing).{declared}",
                thousands(ev.blob_len - present as u64)
            ),
            truncated_fix(names),
        );
    }
    if ev.blob_len < FOOTER_LEN as u64 {
        return Problem::new(
            ProblemCode::NotAVhd,
            format!(
                "The blob has only {} bytes; a VHD ends with a 512-byte footer, and this one has none.",
                ev.blob_len
            ),
            format!("Upload the VHD file itself as {}.", names.input),
        );
    }
    let scheme = partition::parse(ev.head, ev.gpt_entries);
    let disk_like = match &scheme {
        Ok(PartitionScheme::None) => None,
        Ok(s) => Some(s.describe()),
        Err(_) => Some("a (damaged) partition table".to_string()),
    };
    let zeros = ev.tail.iter().all(|&b| b == 0);
    let found = if zeros {
        "the last 512 bytes are zeros where the VHD footer belongs".to_string()
    } else {
        format!(
            "the last 512 bytes are not a VHD footer (they start {:?}, not \"conectix\")",
            crate::footer::printable(ev.tail.get(..8).unwrap_or(ev.tail))
        )
    };
    if !ev.blob_len.is_multiple_of(512) {
        return Problem::new(
            ProblemCode::VhdTruncated,
            format!(
                "The blob's length {} is not a whole number of 512-byte sectors and {found}: it was cut short.",
                bytes(ev.blob_len)
            ),
            truncated_fix(names),
        );
    }
    if disk_like.is_none() && !zeros {
        return Problem::new(
            ProblemCode::NotAVhd,
            format!(
                "The blob ({}) is not a VHD: {found}, and its first sectors are no format we know.",
                bytes(ev.blob_len)
            ),
            format!(
                "Upload a fixed VHD: `qemu-img convert -O vpc -o subformat=fixed,force_size <disk> {}` \
                 (if the blob is a raw disk image, add `-f raw`).",
                names.output
            ),
        );
    }
    let starts = disk_like
        .map(|d| format!(" It starts with {d}, so it holds a disk."))
        .unwrap_or_default();
    Problem::new(
        ProblemCode::VhdFooterMissing,
        format!(
            "The blob ({}) has no VHD footer: {found}.{starts} Either the upload has not finished (a page \
             blob exists at full size before its pages are written), it was cut short, or it is a raw \
             disk image rather than a VHD.",
            bytes(ev.blob_len)
        ),
        format!(
            "If an upload is still running, let it finish (and write the manifest after it). If it was \
             interrupted, upload the VHD again. If it is a raw disk image, convert it: {}",
            raw_convert(names, ev.blob_len)
        ),
    )
}

/// The command that turns a raw image of `len` bytes into a fixed VHD, resizing it to a whole
/// number of MiB first when needed.
fn raw_convert(names: &Names, len: u64) -> String {
    let convert = format!(
        "qemu-img convert -f raw -O vpc -o subformat=fixed,force_size {} {}",
        names.input, names.output
    );
    if len.is_multiple_of(MIB) {
        format!("`{convert}`.")
    } else {
        format!(
            "`qemu-img resize -f raw {} {} && {convert}` (its size is not a multiple of 1 MiB, so it is \
             grown to the next MiB first).",
            names.input,
            align_up_mib(len)
        )
    }
}

fn truncated_fix(names: &Names) -> String {
    format!(
        "Upload the VHD again, completely (the blob ends before the footer): `azcopy copy {} '<blob URL>' \
         --blob-type PageBlob`, and compare the blob's length with the file's.",
        names.input
    )
}

fn check_fixed(
    ev: &Evidence<'_>,
    ex: &Expectations,
    names: &Names,
    f: Footer,
) -> Result<Inspection, Problem> {
    let size = f.current_size;
    let expected_len = size.checked_add(FOOTER_LEN as u64);
    if expected_len != Some(ev.blob_len) {
        let short = expected_len.is_none_or(|e| e > ev.blob_len);
        let (diff, fix) = if short {
            (
                format!(
                    "{} bytes short",
                    thousands(expected_len.map_or(0, |e| e - ev.blob_len))
                ),
                "Data is missing between the start and the footer. Upload the VHD again from the \
                 original file and compare the blob's length with the file's."
                    .to_string(),
            )
        } else {
            (
                format!("{} bytes too many", thousands(ev.blob_len - size - 512)),
                format!(
                    "The blob was padded or the footer belongs to a smaller disk. Recreate the VHD with \
                     `qemu-img convert -O vpc -o subformat=fixed,force_size <source> {}` and upload that \
                     file unchanged.",
                    names.output
                ),
            )
        };
        return Err(Problem::new(
            ProblemCode::VhdSizeMismatch,
            format!(
                "The footer's virtual size {} + 512 ≠ blob length {} ({diff}).",
                thousands(size),
                thousands(ev.blob_len)
            ),
            fix,
        ));
    }
    let limits = ex.limits;
    if size < limits.min_virtual_size {
        return Err(Problem::new(
            ProblemCode::VhdTooSmall,
            format!(
                "The virtual size {} is below the minimum {}.",
                bytes(size),
                bytes(limits.min_virtual_size)
            ),
            format!(
                "Upload the real disk: `qemu-img info {}` should show a virtual size of at least {}.",
                names.input,
                bytes(limits.min_virtual_size)
            ),
        ));
    }
    if size > limits.max_virtual_size {
        // The advice names only what the caller can do: galleon does not publish with shallow
        // replication (yet), so it is not offered as a way out.
        return Err(Problem::new(
            ProblemCode::VhdTooLarge,
            format!(
                "The virtual size {} is above the gallery limit {}.",
                bytes(size),
                bytes(limits.max_virtual_size)
            ),
            format!(
                "Shrink the disk to at most {} (shrink the file systems and partitions first, then \
                 `qemu-img resize --shrink`).",
                bytes(limits.max_virtual_size)
            ),
        ));
    }
    if !size.is_multiple_of(MIB) {
        let why = if f.made_by_qemu_without_force_size() {
            " The footer's creator is `qemu`: qemu-img without `-o force_size` rounds the size to the \
             disk geometry (CHS), which makes it unaligned."
        } else {
            ""
        };
        return Err(Problem::new(
            ProblemCode::VhdSizeNotAligned,
            format!(
                "The virtual size {} is not a multiple of 1 MiB (1,048,576 bytes): it is {} MiB and {} \
                 bytes; Azure needs a whole number of MiB (next is {}).{why}",
                bytes(size),
                size / MIB,
                thousands(size % MIB),
                bytes(align_up_mib(size))
            ),
            convert_fix(names, Some("vpc"), Some(size)),
        ));
    }

    let mut notes = Vec::new();
    let disk_sectors = size / 512;
    let last_lba = disk_sectors.saturating_sub(1);
    let parsed = partition::parse(ev.head, ev.gpt_entries)
        .map_err(|e| partition_error_message(&e, size))
        .and_then(|scheme| match scheme.partition_beyond(disk_sectors) {
            Some((number, end)) => Err(format!(
                "partition {number} ends at LBA {} but the disk's last LBA is {} (it has {} sectors): \
                 the disk was cut or shrunk after it was partitioned",
                thousands(end),
                thousands(last_lba),
                thousands(disk_sectors)
            )),
            None => Ok(scheme),
        });
    let partition_scheme = match parsed {
        Ok(s) => s,
        Err(message) => {
            if ex.allow_generation_mismatch {
                notes.push(format!(
                    "Partition table not checked (allowGenerationMismatch): {message}"
                ));
                PartitionScheme::None
            } else {
                return Err(Problem::new(
                    ProblemCode::PartitionTableInvalid,
                    format!("The disk's partition table is damaged: {message}."),
                    "Repair the partition table (for example `gdisk`: `v` to verify, `w` to write; or \
                     recreate the image), or set allowGenerationMismatch in the manifest to skip the \
                     partition checks."
                        .to_string(),
                ));
            }
        }
    };
    if let PartitionScheme::Gpt { backup_lba, .. } = &partition_scheme
        && *backup_lba != last_lba
    {
        notes.push(format!(
            "The GPT's backup header is recorded at LBA {} but the disk's last LBA is {}: the disk was \
             resized after partitioning. Most systems repair this at boot; `sgdisk -e` moves it.",
            thousands(*backup_lba),
            thousands(last_lba)
        ));
    }
    let bootable_generations = partition_scheme.bootable_generations();
    let (generation, generation_source) = match (ex.declared_generation, &bootable_generations) {
        (Some(declared), Some(bootable)) if !bootable.contains(&declared) => {
            let needed = bootable
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(" or ");
            let why = match declared {
                Generation::V1 => {
                    "it boots only with UEFI firmware (an EFI System Partition and no BIOS boot partition)"
                }
                Generation::V2 => {
                    "generation 2 VMs (UEFI) boot GPT disks with an EFI System Partition, and this disk \
                     has an MBR without one"
                }
            };
            let message = format!(
                "The manifest declares hyperVGeneration {declared} but the disk has {}: {why}, so it \
                 needs generation {needed}.",
                partition_scheme.describe()
            );
            if !ex.allow_generation_mismatch {
                return Err(Problem::new(
                    ProblemCode::GenerationMismatch,
                    message,
                    format!(
                        "Declare hyperVGeneration {needed} in the manifest, or set allowGenerationMismatch: \
                         true if you know the disk boots under {declared}."
                    ),
                ));
            }
            notes.push(format!("Accepted by allowGenerationMismatch: {message}"));
            (Some(declared), GenerationSource::Declared)
        }
        (Some(declared), _) => (Some(declared), GenerationSource::Declared),
        (None, _) => match partition_scheme.implied_generation() {
            Some(g) => (Some(g), GenerationSource::Detected),
            None => (None, GenerationSource::Unknown),
        },
    };
    if generation.is_none() {
        notes.push(
            "No hyperVGeneration was declared and the partition table does not imply one; ARM needs it \
             for images from a blob, so declare it in the manifest."
                .to_string(),
        );
    }
    if f.saved_state {
        notes.push(
            "The footer's saved-state flag is set (the disk was in a saved state).".to_string(),
        );
    }
    Ok(Inspection {
        blob_len: ev.blob_len,
        virtual_size: size,
        footer: f,
        partition_scheme,
        bootable_generations,
        generation,
        generation_source,
        notes,
    })
}

fn partition_error_message(e: &PartitionError, virtual_size: u64) -> String {
    match e {
        PartitionError::GptEntriesNotRead { offset, len }
            if offset.saturating_add(*len) > virtual_size =>
        {
            format!(
                "the GPT header puts its partition entries at byte {} ({} bytes), beyond the end of the {} disk",
                thousands(*offset),
                thousands(*len),
                bytes(virtual_size)
            )
        }
        other => other.to_string(),
    }
}

/// Builds the bytes of a fixed VHD's footer for `disk`; tests use it to make small VHDs in memory.
pub fn fixed_vhd_in_memory(mut disk: Vec<u8>) -> Vec<u8> {
    let f = footer::build(disk.len() as u64, DiskType::Fixed, b"qem2");
    disk.extend_from_slice(&f);
    disk
}
