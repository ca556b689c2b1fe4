//! Which removable-media UEFI boot loaders (`\EFI\BOOT\BOOTX64.EFI`, `BOOTAA64.EFI`, `BOOTIA32.EFI`)
//! the disk's EFI System Partition holds, read with a few range reads and at most
//! [`ESP_READ_CAP`] bytes. Anything in the way (no ESP, no FAT, a damaged chain, the cap) is an
//! [`Unchecked`] outcome, never an error; only read failures are errors.
//!
//! Hand-written rather than `fatfs`: [`RangeRead`] is async (HTTP range reads of a blob), while
//! `fatfs` drives a synchronous `Read + Seek` (and, in 0.3, needs `Write` too), so using it would
//! mean blocking on the runtime inside each read or prefetching the partition; and it could not
//! stop at a byte budget. The walk needs only the boot sector, three directories and a few FAT
//! entries.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fat::{Entry, FatKind, Link, Root, Slot, Volume, short_name};
use crate::partition::{ESP_GUID, MBR_TYPE_ESP, PartitionScheme, SECTOR};
use crate::read::{InspectError, RangeRead, read_exact};

/// Most bytes the boot-loader check reads from the disk, all reads together.
pub const ESP_READ_CAP: u64 = 256 * 1024;
/// Directories are read this many bytes at a time (less at the end of a cluster or region), so a
/// lookup that finds its name, or the end of the directory, early stops early.
pub const DIR_CHUNK: u64 = 4096;
/// Longest cluster chain followed in one directory.
const MAX_DIR_CLUSTERS: u32 = 64;

/// A CPU architecture, as named by ARM's `architecture` (`x64`, `Arm64`; `x86` has no Azure image
/// architecture and is only reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "x64")]
    X64,
    Arm64,
    #[serde(rename = "x86")]
    X86,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::X64 => "x64",
            Self::Arm64 => "Arm64",
            Self::X86 => "x86",
        })
    }
}

impl Architecture {
    /// The removable-media boot loader's file name in `\EFI\BOOT` (UEFI specification 3.5.1.1).
    pub fn loader_name(self) -> &'static str {
        match self {
            Self::X64 => "BOOTX64.EFI",
            Self::Arm64 => "BOOTAA64.EFI",
            Self::X86 => "BOOTIA32.EFI",
        }
    }

    const ALL: [Self; 3] = [Self::X64, Self::Arm64, Self::X86];
}

/// A boot loader found in `\EFI\BOOT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootLoader {
    pub architecture: Architecture,
    /// `\EFI\BOOT\BOOTX64.EFI` etc.
    pub path: String,
    /// File size in bytes, from its directory entry.
    pub size: u32,
}

/// Why the loaders could not be checked. The disk may still be fine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", content = "detail")]
pub enum Unchecked {
    #[error("the disk has no EFI System Partition")]
    NoEsp,
    #[error("the EFI System Partition (partition {partition}) lies beyond the end of the disk")]
    EspOutsideDisk { partition: u32 },
    #[error("the EFI System Partition (partition {partition}) holds no FAT file system: {why}")]
    NotFat { partition: u32, why: String },
    #[error("the EFI System Partition's FAT file system is damaged: {0}")]
    Damaged(String),
    #[error("reading the EFI System Partition would take more than {cap} bytes")]
    CapReached { cap: u64 },
}

/// What the ESP says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum LoaderOutcome {
    /// The ESP was read; `loaders` lists what `\EFI\BOOT` holds (empty when there is no such
    /// directory or it has none of the three loaders).
    Checked {
        /// Partition number (from 1) of the ESP.
        partition: u32,
        fat: FatKind,
        loaders: Vec<BootLoader>,
    },
    Unchecked(Unchecked),
}

impl LoaderOutcome {
    /// The architectures of the loaders found (empty when unchecked or none found).
    pub fn architectures(&self) -> Vec<Architecture> {
        match self {
            Self::Checked { loaders, .. } => loaders.iter().map(|l| l.architecture).collect(),
            Self::Unchecked(_) => Vec::new(),
        }
    }
}

/// The outcome and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderScan {
    pub outcome: LoaderOutcome,
    /// Range reads made.
    pub reads: u32,
    /// Bytes read, at most [`ESP_READ_CAP`].
    pub bytes_read: u64,
}

/// The ESP as (partition number from 1, byte offset, byte length), from the partition table: the
/// first GPT partition of type C12A7328-… or the first MBR partition of type 0xEF.
pub fn esp_extent(scheme: &PartitionScheme) -> Option<(u32, u64, u64)> {
    match scheme {
        PartitionScheme::Gpt { partitions, .. } => partitions
            .iter()
            .find(|p| p.type_guid == ESP_GUID)
            .map(|p| {
                let sectors = (p.last_lba.saturating_add(1)).saturating_sub(p.first_lba);
                (
                    p.index + 1,
                    p.first_lba.saturating_mul(SECTOR),
                    sectors.saturating_mul(SECTOR),
                )
            }),
        PartitionScheme::Mbr { partitions, .. } => partitions
            .iter()
            .find(|p| p.partition_type == MBR_TYPE_ESP)
            .map(|p| {
                (
                    u32::from(p.index) + 1,
                    u64::from(p.first_lba) * SECTOR,
                    u64::from(p.sectors) * SECTOR,
                )
            }),
        PartitionScheme::None => None,
    }
}

/// Finds the removable-media boot loaders on the disk whose partition table is `scheme` and whose
/// virtual size is `disk_size` (an [`Inspection`](crate::Inspection)'s `partition_scheme` and
/// `virtual_size`), reading through `reader` at most [`ESP_READ_CAP`] bytes.
///
/// Typical cost: the boot sector, one chunk of the root directory, one of `\EFI`, one of
/// `\EFI\BOOT` (4 reads, about 12 KiB). `Err` only for read failures (retry).
pub async fn find_boot_loaders<R: RangeRead>(
    reader: &R,
    scheme: &PartitionScheme,
    disk_size: u64,
) -> Result<LoaderScan, InspectError<R::Error>> {
    let mut walk = Walk {
        reader,
        base: 0,
        limit: 0,
        reads: 0,
        bytes: 0,
        fat_cache: None,
    };
    let outcome = match walk.run(scheme, disk_size).await {
        Ok(o) => o,
        Err(Stop::Unchecked(u)) => LoaderOutcome::Unchecked(u),
        Err(Stop::Read(e)) => return Err(e),
    };
    Ok(LoaderScan {
        outcome,
        reads: walk.reads,
        bytes_read: walk.bytes,
    })
}

enum Stop<E: std::error::Error + 'static> {
    Unchecked(Unchecked),
    Read(InspectError<E>),
}

impl<E: std::error::Error + 'static> From<Unchecked> for Stop<E> {
    fn from(u: Unchecked) -> Self {
        Self::Unchecked(u)
    }
}

struct Walk<'r, R: RangeRead> {
    reader: &'r R,
    /// The ESP's byte offset on the disk.
    base: u64,
    /// Bytes of the ESP (and of the file system in it, once parsed) that may be read.
    limit: u64,
    reads: u32,
    bytes: u64,
    /// The FAT sector(s) read last: (offset in the volume, bytes).
    fat_cache: Option<(u64, Bytes)>,
}

impl<R: RangeRead> Walk<'_, R> {
    async fn run(
        &mut self,
        scheme: &PartitionScheme,
        disk_size: u64,
    ) -> Result<LoaderOutcome, Stop<R::Error>> {
        let (partition, offset, len) = esp_extent(scheme).ok_or(Unchecked::NoEsp)?;
        if len < SECTOR || offset.saturating_add(len) > disk_size {
            return Err(Unchecked::EspOutsideDisk { partition }.into());
        }
        self.base = offset;
        self.limit = len;
        let boot = self.read(0, SECTOR).await?;
        let volume = Volume::parse(&boot).map_err(|why| Unchecked::NotFat { partition, why })?;
        if volume.len > len {
            return Err(Unchecked::NotFat {
                partition,
                why: format!(
                    "the file system says it has {} bytes but the partition has {len}",
                    volume.len
                ),
            }
            .into());
        }
        self.limit = volume.len;
        let mut loaders = Vec::new();
        let efi = short_name("EFI");
        let boot_dir = short_name("BOOT");
        let found = match self.find(&volume, volume.root, &[efi]).await?.first() {
            Some(e) if e.is_dir => {
                let dir = self.dir_root(&volume, e)?;
                self.find(&volume, dir, &[boot_dir]).await?.first().copied()
            }
            _ => None,
        };
        if let Some(e) = found.filter(|e| e.is_dir) {
            let dir = self.dir_root(&volume, &e)?;
            let names = Architecture::ALL.map(|a| short_name(a.loader_name()));
            let entries = self.find(&volume, dir, &names).await?;
            for arch in Architecture::ALL {
                let name = short_name(arch.loader_name());
                if let Some(e) = entries.iter().find(|e| e.name == name && !e.is_dir) {
                    loaders.push(BootLoader {
                        architecture: arch,
                        path: format!(r"\EFI\BOOT\{}", arch.loader_name()),
                        size: e.size,
                    });
                }
            }
        }
        Ok(LoaderOutcome::Checked {
            partition,
            fat: volume.kind,
            loaders,
        })
    }

    /// Reads `len` bytes at `offset` in the ESP, within the cap and the partition.
    async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, Stop<R::Error>> {
        if offset.saturating_add(len) > self.limit {
            return Err(Unchecked::Damaged(format!(
                "it points at bytes {offset}..{} but has only {} bytes",
                offset.saturating_add(len),
                self.limit
            ))
            .into());
        }
        if self.bytes.saturating_add(len) > ESP_READ_CAP {
            return Err(Unchecked::CapReached { cap: ESP_READ_CAP }.into());
        }
        self.reads += 1;
        self.bytes += len;
        read_exact(self.reader, self.base + offset, len)
            .await
            .map_err(Stop::Read)
    }

    /// The directory a subdirectory entry starts.
    fn dir_root(&self, volume: &Volume, e: &Entry) -> Result<Root, Stop<R::Error>> {
        if volume.cluster_offset(e.first_cluster).is_none() {
            return Err(Unchecked::Damaged(format!(
                "a directory starts at cluster {}, outside 2..{}",
                e.first_cluster,
                u64::from(volume.cluster_count) + 2
            ))
            .into());
        }
        Ok(Root::Cluster(e.first_cluster))
    }

    /// Scans directory `dir` until every name in `names` is found or the directory ends; returns
    /// the entries found with those names.
    async fn find(
        &mut self,
        volume: &Volume,
        dir: Root,
        names: &[[u8; 11]],
    ) -> Result<Vec<Entry>, Stop<R::Error>> {
        let mut found: Vec<Entry> = Vec::new();
        let mut cluster = match dir {
            Root::Region { offset, len } => {
                self.scan(volume, offset, len, names, &mut found).await?;
                return Ok(found);
            }
            Root::Cluster(c) => c,
        };
        // Clusters smaller than a chunk are read a chunk at a time from the cluster on: mkfs and
        // most writers lay directories out contiguously, so the next cluster is usually there.
        let mut ahead: Option<(u64, Bytes)> = None;
        for _ in 0..MAX_DIR_CLUSTERS {
            let offset = volume.cluster_offset(cluster).ok_or_else(|| {
                Unchecked::Damaged(format!("a directory reaches cluster {cluster}"))
            })?;
            let done = if volume.cluster_size >= DIR_CHUNK {
                self.scan(volume, offset, volume.cluster_size, names, &mut found)
                    .await?
            } else {
                let cs = volume.cluster_size as usize;
                let cached = ahead.as_ref().and_then(|(start, bytes)| {
                    let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
                    (from + cs <= bytes.len()).then(|| bytes.slice(from..from + cs))
                });
                let bytes = match cached {
                    Some(b) => b,
                    None => {
                        let len = DIR_CHUNK.min(self.limit.saturating_sub(offset));
                        let b = self.read(offset, len).await?;
                        ahead = Some((offset, b.clone()));
                        b.slice(..cs.min(b.len()))
                    }
                };
                scan_slots(&bytes, volume.kind, names, &mut found)
            };
            if done {
                return Ok(found);
            }
            match self.next_cluster(volume, cluster).await? {
                Link::Next(c) => cluster = c,
                Link::End => return Ok(found),
                Link::Broken(v) => {
                    return Err(Unchecked::Damaged(format!(
                        "the FAT entry of directory cluster {cluster} is {v:#x}"
                    ))
                    .into());
                }
            }
        }
        Err(Unchecked::Damaged(format!(
            "a directory spans more than {MAX_DIR_CLUSTERS} clusters (or its chain loops)"
        ))
        .into())
    }

    /// Scans `len` bytes of directory entries at `offset`, chunk by chunk; true when it is done
    /// (all names found, or the end-of-directory mark met).
    async fn scan(
        &mut self,
        volume: &Volume,
        offset: u64,
        len: u64,
        names: &[[u8; 11]],
        found: &mut Vec<Entry>,
    ) -> Result<bool, Stop<R::Error>> {
        let mut at = 0;
        while at < len {
            let chunk = DIR_CHUNK.min(len - at);
            let bytes = self.read(offset + at, chunk).await?;
            if scan_slots(&bytes, volume.kind, names, found) {
                return Ok(true);
            }
            at += chunk;
        }
        Ok(false)
    }

    /// Follows cluster `c`'s FAT entry, reading the FAT sector(s) holding it unless cached.
    async fn next_cluster(&mut self, volume: &Volume, c: u32) -> Result<Link, Stop<R::Error>> {
        let (offset, len) = volume.fat_entry_location(c);
        let cached = self.fat_cache.as_ref().and_then(|(start, bytes)| {
            let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
            bytes.get(from..from + len as usize).map(<[u8]>::to_vec)
        });
        let raw = match cached {
            Some(raw) => raw,
            None => {
                let bps = volume.bytes_per_sector;
                let start = offset - offset % bps;
                let end = (offset + len).div_ceil(bps) * bps;
                let end = end.min(volume.fat_offset + volume.fat_len);
                let bytes = self.read(start, end.saturating_sub(start)).await?;
                let from = (offset - start) as usize;
                let raw = bytes
                    .get(from..from + len as usize)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| {
                        Unchecked::Damaged(format!("cluster {c}'s FAT entry is beyond the FAT"))
                    })?;
                self.fat_cache = Some((start, bytes));
                raw
            }
        };
        volume
            .decode_fat_entry(c, &raw)
            .ok_or_else(|| Unchecked::Damaged(format!("cluster {c}'s FAT entry is cut")).into())
    }
}

/// Looks through directory slots for `names`; true when done (all found, or the end mark met).
fn scan_slots(bytes: &[u8], kind: FatKind, names: &[[u8; 11]], found: &mut Vec<Entry>) -> bool {
    for slot in bytes.chunks_exact(32) {
        match Slot::parse(slot, kind) {
            Slot::End => return true,
            Slot::Skip => {}
            Slot::Entry(e) => {
                if names.contains(&e.name) && !found.iter().any(|f| f.name == e.name) {
                    found.push(e);
                    if found.len() == names.len() {
                        return true;
                    }
                }
            }
        }
    }
    false
}
