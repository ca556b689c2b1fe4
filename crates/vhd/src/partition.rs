//! The disk's partition table, read from its first sectors (MBR at LBA 0, GPT header at LBA 1 and
//! its entries), and the Hyper-V generation(s) it can boot under. Pure, no I/O.

use serde::{Deserialize, Serialize};

/// Bytes per logical sector; VHDs always use 512.
pub const SECTOR: u64 = 512;
/// Largest GPT entry array we are willing to read (the usual one is 128 × 128 bytes = 16 KiB).
pub const MAX_GPT_ENTRIES_BYTES: u64 = 1 << 20;

/// EFI System Partition type GUID C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// BIOS boot partition type GUID 21686148-6449-6E6F-744E-656564454649 (GRUB on GPT under BIOS).
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
/// MBR partition type of a protective MBR in front of a GPT.
pub const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
/// MBR partition type of an EFI System Partition.
pub const MBR_TYPE_ESP: u8 = 0xEF;

/// Hyper-V generation, spelled as ARM's `hyperVGeneration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Generation {
    /// BIOS firmware (Hyper-V generation 1).
    V1,
    /// UEFI firmware (Hyper-V generation 2).
    V2,
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "V1",
            Self::V2 => "V2",
        })
    }
}

/// One primary MBR partition entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbrPartition {
    /// 0..=3, the slot in the MBR.
    pub index: u8,
    /// Status byte 0x80 ("active", the one BIOS boot code starts).
    pub active: bool,
    pub partition_type: u8,
    pub first_lba: u32,
    pub sectors: u32,
}

/// One used GPT partition entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptPartition {
    pub index: u32,
    /// Upper-case GUID in its usual text form.
    pub type_guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// The partition scheme found on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme")]
pub enum PartitionScheme {
    /// A classic MBR with its used primary partitions.
    Mbr {
        partitions: Vec<MbrPartition>,
        has_active: bool,
        /// A partition of type 0xEF (EFI System Partition on MBR).
        has_esp: bool,
    },
    /// A GUID partition table (behind a protective MBR).
    Gpt {
        partitions: Vec<GptPartition>,
        has_esp: bool,
        has_bios_boot: bool,
        /// False when LBA 0 holds no protective MBR (non-conforming, but some tools write that).
        protective_mbr: bool,
        /// Where the primary header says the backup header is (the disk's last LBA when the table
        /// was written; differs after the disk was resized).
        backup_lba: u64,
    },
    /// No partition table: blank disk, or a file system written straight onto the disk.
    None,
}

/// Why the partition table cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "the MBR declares a GPT (protective partition type 0xEE) but LBA 1 holds no GPT header (\"EFI PART\")"
    )]
    GptHeaderMissing,
    #[error("the GPT header's CRC32 is {stored:#010x} but its bytes give {computed:#010x}")]
    GptHeaderCrc { stored: u32, computed: u32 },
    #[error("the GPT header is malformed: {0}")]
    GptHeaderMalformed(String),
    #[error(
        "the GPT partition entries' CRC32 is {stored:#010x} but their bytes give {computed:#010x}"
    )]
    GptEntriesCrc { stored: u32, computed: u32 },
    #[error(
        "the GPT partition entries ({len} bytes at byte offset {offset}) were not read; call with the bytes at that offset"
    )]
    GptEntriesNotRead { offset: u64, len: u64 },
}

/// Where a GPT header says its partition entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptEntriesLocation {
    /// Byte offset from the start of the disk.
    pub offset: u64,
    pub len: u64,
}

struct GptHeader {
    backup_lba: u64,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl GptEntriesLocation {
    fn end(self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The location of the GPT entries when `head` (the disk's first bytes) holds a valid GPT header,
/// so a reader can fetch them when they lie beyond `head`.
pub fn gpt_entries_location(head: &[u8]) -> Option<GptEntriesLocation> {
    let header = parse_gpt_header(head).ok()??;
    Some(entries_location(&header))
}

fn entries_location(h: &GptHeader) -> GptEntriesLocation {
    GptEntriesLocation {
        offset: h.entries_lba.saturating_mul(SECTOR),
        len: u64::from(h.entry_count) * u64::from(h.entry_size),
    }
}

/// Reads the partition scheme from `head` (the disk's first bytes, LBA 0 onwards). When the GPT
/// entries lie beyond `head`, pass them as `entries` (the bytes at [`gpt_entries_location`]).
pub fn parse(head: &[u8], entries: Option<&[u8]>) -> Result<PartitionScheme, PartitionError> {
    let mbr = parse_mbr(head);
    let protective = mbr.as_ref().is_some_and(|parts| {
        parts
            .iter()
            .any(|p| p.partition_type == MBR_TYPE_PROTECTIVE)
    });
    match parse_gpt_header(head)? {
        Some(header) => {
            let loc = entries_location(&header);
            let bytes = match entries {
                Some(e) if e.len() as u64 >= loc.len => &e[..loc.len as usize],
                _ if loc.end() <= head.len() as u64 => {
                    &head[loc.offset as usize..loc.end() as usize]
                }
                _ => {
                    return Err(PartitionError::GptEntriesNotRead {
                        offset: loc.offset,
                        len: loc.len,
                    });
                }
            };
            let computed = crc32fast::hash(bytes);
            if computed != header.entries_crc {
                return Err(PartitionError::GptEntriesCrc {
                    stored: header.entries_crc,
                    computed,
                });
            }
            let partitions: Vec<GptPartition> = bytes
                .chunks_exact(header.entry_size as usize)
                .enumerate()
                .filter(|(_, e)| e[0..16].iter().any(|&b| b != 0))
                .map(|(i, e)| GptPartition {
                    index: i as u32,
                    type_guid: guid_text(&e[0..16]),
                    first_lba: le64(e, 32),
                    last_lba: le64(e, 40),
                    name: utf16_name(&e[56..128]),
                })
                .collect();
            Ok(PartitionScheme::Gpt {
                has_esp: partitions.iter().any(|p| p.type_guid == ESP_GUID),
                has_bios_boot: partitions.iter().any(|p| p.type_guid == BIOS_BOOT_GUID),
                partitions,
                protective_mbr: protective,
                backup_lba: header.backup_lba,
            })
        }
        None if protective => Err(PartitionError::GptHeaderMissing),
        None => Ok(match mbr {
            Some(partitions) => PartitionScheme::Mbr {
                has_active: partitions.iter().any(|p| p.active),
                has_esp: partitions.iter().any(|p| p.partition_type == MBR_TYPE_ESP),
                partitions,
            },
            None => PartitionScheme::None,
        }),
    }
}

impl PartitionScheme {
    /// The generations this disk can boot under, or `None` when the table gives no opinion (blank
    /// disk, data-only partitions).
    ///
    /// - GPT with an EFI System Partition: V2; also V1 when a BIOS boot partition is present
    ///   (hybrid images such as Ubuntu's boot either way).
    /// - GPT with only a BIOS boot partition: V1.
    /// - MBR with partitions and no 0xEF ESP: V1 (Hyper-V generation 2 boots GPT disks).
    /// - MBR with an 0xEF ESP: no opinion (firmware-dependent).
    pub fn bootable_generations(&self) -> Option<Vec<Generation>> {
        match self {
            Self::Gpt {
                has_esp,
                has_bios_boot,
                ..
            } => match (has_esp, has_bios_boot) {
                (true, true) => Some(vec![Generation::V1, Generation::V2]),
                (true, false) => Some(vec![Generation::V2]),
                (false, true) => Some(vec![Generation::V1]),
                (false, false) => None,
            },
            Self::Mbr {
                partitions,
                has_esp,
                ..
            } => (!partitions.is_empty() && !has_esp).then(|| vec![Generation::V1]),
            Self::None => None,
        }
    }

    /// The one generation the table implies, when it implies exactly one.
    pub fn implied_generation(&self) -> Option<Generation> {
        match self.bootable_generations()?.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// The first partition that ends beyond a disk of `disk_sectors` sectors, as
    /// (partition number from 1, its last LBA).
    pub fn partition_beyond(&self, disk_sectors: u64) -> Option<(u32, u64)> {
        let last = disk_sectors.checked_sub(1)?;
        match self {
            Self::Mbr { partitions, .. } => partitions
                .iter()
                .filter(|p| p.partition_type != MBR_TYPE_PROTECTIVE)
                .map(|p| {
                    let end = (u64::from(p.first_lba) + u64::from(p.sectors)).saturating_sub(1);
                    (u32::from(p.index) + 1, end)
                })
                .find(|(_, end)| *end > last),
            Self::Gpt { partitions, .. } => partitions
                .iter()
                .map(|p| (p.index + 1, p.last_lba))
                .find(|(_, end)| *end > last),
            Self::None => None,
        }
    }

    /// A short description for messages, e.g. "GPT with an EFI System Partition".
    pub fn describe(&self) -> String {
        match self {
            Self::Gpt {
                has_esp,
                has_bios_boot,
                partitions,
                ..
            } => {
                let mut s = format!("GPT with {} partition(s)", partitions.len());
                if *has_esp {
                    s.push_str(", one an EFI System Partition");
                }
                if *has_bios_boot {
                    s.push_str(", one a BIOS boot partition");
                }
                s
            }
            Self::Mbr {
                partitions,
                has_active,
                has_esp,
            } => {
                let mut s = format!("MBR with {} partition(s)", partitions.len());
                if *has_active {
                    s.push_str(", one marked active");
                }
                if *has_esp {
                    s.push_str(", one of type 0xEF (EFI System)");
                }
                s
            }
            Self::None => "no partition table".to_string(),
        }
    }
}

/// The primary MBR partitions, or `None` when LBA 0 is not an MBR (no 0x55AA signature, or status
/// bytes other than 0x00/0x80, as in a file system boot sector).
fn parse_mbr(head: &[u8]) -> Option<Vec<MbrPartition>> {
    let sector = head.get(..512)?;
    if sector[510] != 0x55 || sector[511] != 0xAA {
        return None;
    }
    let mut parts = Vec::new();
    for i in 0..4u8 {
        let e = &sector[446 + 16 * i as usize..446 + 16 * (i as usize + 1)];
        if e[0] != 0 && e[0] != 0x80 {
            return None;
        }
        if e[4] == 0 {
            continue;
        }
        parts.push(MbrPartition {
            index: i,
            active: e[0] == 0x80,
            partition_type: e[4],
            first_lba: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            sectors: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
        });
    }
    Some(parts)
}

/// The GPT header at LBA 1: `Ok(None)` when there is none, an error when it is there but broken.
fn parse_gpt_header(head: &[u8]) -> Result<Option<GptHeader>, PartitionError> {
    let Some(lba1) = head.get(512..1024) else {
        return Ok(None);
    };
    if &lba1[0..8] != b"EFI PART" {
        return Ok(None);
    }
    let header_size = le32(lba1, 12);
    if !(92..=512).contains(&header_size) {
        return Err(PartitionError::GptHeaderMalformed(format!(
            "header size {header_size} is outside 92..=512"
        )));
    }
    let stored = le32(lba1, 16);
    let mut copy = lba1[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32fast::hash(&copy);
    if computed != stored {
        return Err(PartitionError::GptHeaderCrc { stored, computed });
    }
    let my_lba = le64(lba1, 24);
    if my_lba != 1 {
        return Err(PartitionError::GptHeaderMalformed(format!(
            "the primary header says it is at LBA {my_lba}, not 1"
        )));
    }
    let header = GptHeader {
        backup_lba: le64(lba1, 32),
        entries_lba: le64(lba1, 72),
        entry_count: le32(lba1, 80),
        entry_size: le32(lba1, 84),
        entries_crc: le32(lba1, 88),
    };
    if header.entry_size < 128 || !header.entry_size.is_power_of_two() {
        return Err(PartitionError::GptHeaderMalformed(format!(
            "partition entry size {} is not 128 × 2^n",
            header.entry_size
        )));
    }
    let loc = entries_location(&header);
    if header.entries_lba < 2 || loc.len > MAX_GPT_ENTRIES_BYTES {
        return Err(PartitionError::GptHeaderMalformed(format!(
            "{} entries of {} bytes at LBA {} (expected at LBA ≥ 2 and at most {} bytes)",
            header.entry_count, header.entry_size, header.entries_lba, MAX_GPT_ENTRIES_BYTES
        )));
    }
    Ok(Some(header))
}

/// A GUID from its on-disk mixed-endian form.
fn guid_text(b: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// The on-disk mixed-endian bytes of a GUID in text form (for writing test tables).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut out = raw;
    out[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    Some(out)
}

fn utf16_name(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Writers of partition tables, so tests (here and in galleon) can build disks without sfdisk.
pub mod write {
    use super::*;

    /// One partition to write: type, first and last LBA (inclusive), name.
    pub struct Part<'a> {
        pub type_guid: &'a str,
        pub first_lba: u64,
        pub last_lba: u64,
        pub name: &'a str,
    }

    /// Writes an MBR into `disk[0..512]` with the given (active, type, first LBA, sectors) entries.
    pub fn mbr(disk: &mut [u8], entries: &[(bool, u8, u32, u32)]) {
        for (i, (active, ty, first, sectors)) in entries.iter().enumerate().take(4) {
            let e = &mut disk[446 + 16 * i..446 + 16 * (i + 1)];
            e.fill(0);
            e[0] = if *active { 0x80 } else { 0 };
            e[4] = *ty;
            e[8..12].copy_from_slice(&first.to_le_bytes());
            e[12..16].copy_from_slice(&sectors.to_le_bytes());
        }
        disk[510] = 0x55;
        disk[511] = 0xAA;
    }

    /// Writes a protective MBR, a primary GPT header at LBA 1 and 128 entries at LBA 2 into `disk`
    /// (whose length is the disk size), with correct CRC32s. The backup GPT is not written.
    pub fn gpt(disk: &mut [u8], parts: &[Part<'_>]) {
        let sectors = disk.len() as u64 / SECTOR;
        let protective_len = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
        mbr(disk, &[(false, MBR_TYPE_PROTECTIVE, 1, protective_len)]);
        let mut entries = vec![0u8; 128 * 128];
        for (i, p) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&guid_bytes(p.type_guid).unwrap_or([0; 16]));
            e[16..32].copy_from_slice(&[(i as u8) + 1; 16]);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            for (j, u) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        let mut h = [0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[56..72].copy_from_slice(&[0x42; 16]);
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        disk[512..1024].fill(0);
        disk[512..604].copy_from_slice(&h);
        disk[1024..1024 + entries.len()].copy_from_slice(&entries);
    }
}

#[cfg(test)]
mod tests {
    use super::write::{Part, gpt, mbr};
    use super::*;

    const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

    fn disk() -> Vec<u8> {
        vec![0u8; 64 * 1024]
    }

    #[test]
    fn guid_text_and_bytes_agree() {
        let b = guid_bytes(ESP_GUID).expect("valid");
        assert_eq!(&b[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(guid_text(&b), ESP_GUID);
        assert_eq!(
            &guid_bytes(BIOS_BOOT_GUID).expect("valid"),
            b"Hah!IdontNeedEFI"
        );
    }

    #[test]
    fn table_of_schemes_and_generations() {
        struct Case {
            name: &'static str,
            build: fn(&mut Vec<u8>),
            want: fn(&PartitionScheme) -> bool,
            generations: Option<Vec<Generation>>,
        }
        let cases = [
            Case {
                name: "blank disk",
                build: |_| {},
                want: |s| *s == PartitionScheme::None,
                generations: None,
            },
            Case {
                name: "MBR, one active Linux partition",
                build: |d| mbr(d, &[(true, 0x83, 2048, 100_000)]),
                want: |s| matches!(s, PartitionScheme::Mbr { has_active: true, has_esp: false, partitions } if partitions.len() == 1),
                generations: Some(vec![Generation::V1]),
            },
            Case {
                name: "MBR, inactive NTFS partition",
                build: |d| mbr(d, &[(false, 0x07, 2048, 100_000)]),
                want: |s| {
                    matches!(
                        s,
                        PartitionScheme::Mbr {
                            has_active: false,
                            ..
                        }
                    )
                },
                generations: Some(vec![Generation::V1]),
            },
            Case {
                name: "MBR with 0xEF ESP",
                build: |d| {
                    mbr(
                        d,
                        &[(false, MBR_TYPE_ESP, 2048, 1000), (true, 0x83, 4096, 1000)],
                    )
                },
                want: |s| matches!(s, PartitionScheme::Mbr { has_esp: true, .. }),
                generations: None,
            },
            Case {
                name: "MBR signature, no partitions",
                build: |d| mbr(d, &[]),
                want: |s| matches!(s, PartitionScheme::Mbr { partitions, .. } if partitions.is_empty()),
                generations: None,
            },
            Case {
                name: "boot sector of a file system (status bytes not 0/0x80)",
                build: |d| {
                    d[446..510].fill(0x33);
                    d[510] = 0x55;
                    d[511] = 0xAA;
                },
                want: |s| *s == PartitionScheme::None,
                generations: None,
            },
            Case {
                name: "GPT with ESP",
                build: |d| {
                    gpt(
                        d,
                        &[
                            Part {
                                type_guid: ESP_GUID,
                                first_lba: 2048,
                                last_lba: 4095,
                                name: "EFI system partition",
                            },
                            Part {
                                type_guid: LINUX_FS,
                                first_lba: 4096,
                                last_lba: 8191,
                                name: "root",
                            },
                        ],
                    )
                },
                want: |s| matches!(s, PartitionScheme::Gpt { has_esp: true, has_bios_boot: false, protective_mbr: true, partitions, backup_lba: 127 } if partitions.len() == 2 && partitions[0].name == "EFI system partition"),
                generations: Some(vec![Generation::V2]),
            },
            Case {
                name: "GPT with ESP and BIOS boot (hybrid)",
                build: |d| {
                    gpt(
                        d,
                        &[
                            Part {
                                type_guid: BIOS_BOOT_GUID,
                                first_lba: 34,
                                last_lba: 2047,
                                name: "",
                            },
                            Part {
                                type_guid: ESP_GUID,
                                first_lba: 2048,
                                last_lba: 4095,
                                name: "",
                            },
                        ],
                    )
                },
                want: |s| {
                    matches!(
                        s,
                        PartitionScheme::Gpt {
                            has_esp: true,
                            has_bios_boot: true,
                            ..
                        }
                    )
                },
                generations: Some(vec![Generation::V1, Generation::V2]),
            },
            Case {
                name: "GPT with BIOS boot only",
                build: |d| {
                    gpt(
                        d,
                        &[Part {
                            type_guid: BIOS_BOOT_GUID,
                            first_lba: 34,
                            last_lba: 2047,
                            name: "",
                        }],
                    )
                },
                want: |s| {
                    matches!(
                        s,
                        PartitionScheme::Gpt {
                            has_esp: false,
                            has_bios_boot: true,
                            ..
                        }
                    )
                },
                generations: Some(vec![Generation::V1]),
            },
            Case {
                name: "GPT with a data partition",
                build: |d| {
                    gpt(
                        d,
                        &[Part {
                            type_guid: LINUX_FS,
                            first_lba: 2048,
                            last_lba: 4095,
                            name: "data",
                        }],
                    )
                },
                want: |s| {
                    matches!(
                        s,
                        PartitionScheme::Gpt {
                            has_esp: false,
                            has_bios_boot: false,
                            ..
                        }
                    )
                },
                generations: None,
            },
        ];
        for case in cases {
            let mut d = disk();
            (case.build)(&mut d);
            let scheme = parse(&d, None).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!((case.want)(&scheme), "{}: got {scheme:?}", case.name);
            assert_eq!(
                scheme.bootable_generations(),
                case.generations,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn broken_gpts_are_errors() {
        let esp = [Part {
            type_guid: ESP_GUID,
            first_lba: 2048,
            last_lba: 4095,
            name: "",
        }];

        let mut d = disk();
        gpt(&mut d, &esp);
        d[512 + 40] ^= 1;
        assert!(matches!(
            parse(&d, None),
            Err(PartitionError::GptHeaderCrc { .. })
        ));

        let mut d = disk();
        gpt(&mut d, &esp);
        d[1024 + 40] ^= 1;
        assert!(matches!(
            parse(&d, None),
            Err(PartitionError::GptEntriesCrc { .. })
        ));

        let mut d = disk();
        gpt(&mut d, &esp);
        d[512..520].copy_from_slice(b"NOT PART");
        assert_eq!(parse(&d, None), Err(PartitionError::GptHeaderMissing));
    }

    #[test]
    fn entries_beyond_the_head_must_be_supplied() {
        let mut d = vec![0u8; 1 << 20];
        gpt(
            &mut d,
            &[Part {
                type_guid: ESP_GUID,
                first_lba: 2048,
                last_lba: 4095,
                name: "",
            }],
        );
        // Move the entries to LBA 1024 and fix the header.
        let entries = d[1024..1024 + 16384].to_vec();
        d[1024..1024 + 16384].fill(0);
        d[512 * 1024..512 * 1024 + 16384].copy_from_slice(&entries);
        d[512 + 72..512 + 80].copy_from_slice(&1024u64.to_le_bytes());
        d[512 + 16..512 + 20].fill(0);
        let crc = crc32fast::hash(&d[512..604]);
        d[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());

        let head = &d[..64 * 1024];
        let loc = gpt_entries_location(head).expect("header is valid");
        assert_eq!(
            loc,
            GptEntriesLocation {
                offset: 512 * 1024,
                len: 16384
            }
        );
        assert_eq!(
            parse(head, None),
            Err(PartitionError::GptEntriesNotRead {
                offset: 512 * 1024,
                len: 16384
            })
        );
        let scheme = parse(head, Some(&entries)).expect("entries supplied");
        assert_eq!(scheme.implied_generation(), Some(Generation::V2));
    }
}
