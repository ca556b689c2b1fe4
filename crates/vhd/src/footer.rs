//! The 512-byte VHD footer (Microsoft "Virtual Hard Disk Image Format Specification", big-endian
//! fields): parsing, the one's-complement checksum and the disk type. Pure, no I/O.

use serde::{Deserialize, Serialize};

/// Size of a VHD footer (and of a VHD sector) in bytes.
pub const FOOTER_LEN: usize = 512;
/// The cookie every VHD footer starts with.
pub const COOKIE: &[u8; 8] = b"conectix";
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z).
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;

const CHECKSUM_AT: usize = 64;

/// What kind of VHD the footer describes (footer offset 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskType {
    /// 0: no disk.
    None,
    /// 2: fixed: the disk's bytes, then the footer. The only type Azure accepts.
    Fixed,
    /// 3: dynamic (sparse): footer copy, dynamic header `cxsparse`, block allocation table, blocks.
    Dynamic,
    /// 4: differencing: a dynamic disk that names a parent.
    Differencing,
    /// 1 (reserved, deprecated) or any value the specification does not define.
    Other(u32),
}

impl DiskType {
    /// Decodes the footer's disk type field.
    pub fn from_u32(value: u32) -> Self {
        match value {
            0 => Self::None,
            2 => Self::Fixed,
            3 => Self::Dynamic,
            4 => Self::Differencing,
            other => Self::Other(other),
        }
    }

    /// The numeric value as stored in the footer.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Fixed => 2,
            Self::Dynamic => 3,
            Self::Differencing => 4,
            Self::Other(v) => v,
        }
    }
}

/// Cylinder/heads/sectors geometry (footer offset 56).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

impl Geometry {
    /// Bytes addressed by the geometry (cylinders × heads × sectors × 512).
    pub fn bytes(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track) * 512
    }
}

/// A parsed VHD footer. `checksum` is the stored value; [`Footer::checksum_ok`] compares it with the
/// one computed from the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    pub features: u32,
    pub file_format_version: u32,
    /// Offset of the dynamic header; `0xFFFF_FFFF_FFFF_FFFF` for fixed disks.
    pub data_offset: u64,
    /// Seconds since 2000-01-01T00:00:00Z.
    pub timestamp: u32,
    /// Four characters naming the tool that made the disk (`qemu`, `qem2` for qemu-img with
    /// `force_size`, `win `, `vpc `, `d2v `, `tap\0`…), NULs trimmed.
    pub creator_application: String,
    pub creator_version: u32,
    /// `Wi2k` or `Mac `.
    pub creator_host_os: String,
    pub original_size: u64,
    /// The virtual size: the disk's size in bytes as the guest sees it.
    pub current_size: u64,
    pub geometry: Geometry,
    pub disk_type: DiskType,
    pub checksum: u32,
    /// The checksum computed from the footer bytes.
    pub computed_checksum: u32,
    /// The footer's unique id, formatted like a UUID (byte order as stored).
    pub unique_id: String,
    pub saved_state: bool,
}

/// Why 512 bytes are not a VHD footer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    #[error("no VHD footer: expected the cookie \"conectix\", found \"{found}\"")]
    BadCookie { found: String },
}

impl Footer {
    /// Parses a footer. Only the cookie is required; a wrong checksum is reported by
    /// [`Footer::checksum_ok`] so callers can tell "not a footer" from "damaged footer".
    pub fn parse(bytes: &[u8; FOOTER_LEN]) -> Result<Self, FooterError> {
        if &bytes[0..8] != COOKIE {
            return Err(FooterError::BadCookie {
                found: printable(&bytes[0..8]),
            });
        }
        Ok(Self {
            features: be32(bytes, 8),
            file_format_version: be32(bytes, 12),
            data_offset: be64(bytes, 16),
            timestamp: be32(bytes, 24),
            creator_application: ascii4(&bytes[28..32]),
            creator_version: be32(bytes, 32),
            creator_host_os: ascii4(&bytes[36..40]),
            original_size: be64(bytes, 40),
            current_size: be64(bytes, 48),
            geometry: Geometry {
                cylinders: u16::from_be_bytes([bytes[56], bytes[57]]),
                heads: bytes[58],
                sectors_per_track: bytes[59],
            },
            disk_type: DiskType::from_u32(be32(bytes, 60)),
            checksum: be32(bytes, CHECKSUM_AT),
            computed_checksum: checksum(bytes),
            unique_id: uuid_like(&bytes[68..84]),
            saved_state: bytes[84] != 0,
        })
    }

    /// True when the stored checksum matches the bytes.
    pub fn checksum_ok(&self) -> bool {
        self.checksum == self.computed_checksum
    }

    /// The timestamp as seconds since the Unix epoch.
    pub fn timestamp_unix(&self) -> u64 {
        VHD_EPOCH_UNIX + u64::from(self.timestamp)
    }

    /// True when the disk was made by qemu-img without `force_size` (creator `qemu`): its size was
    /// rounded to the CHS geometry rather than kept as requested.
    pub fn made_by_qemu_without_force_size(&self) -> bool {
        self.creator_application == "qemu"
    }
}

/// The VHD checksum: the one's complement of the sum of all footer bytes, with the checksum field
/// (offset 64, 4 bytes) counted as zero.
pub fn checksum(bytes: &[u8; FOOTER_LEN]) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(CHECKSUM_AT..CHECKSUM_AT + 4).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(u32::from(*b)));
    !sum
}

/// True when `bytes` starts with a footer cookie.
pub fn has_cookie(bytes: &[u8]) -> bool {
    bytes.starts_with(COOKIE)
}

/// Writes a footer for a fixed (or other) disk, checksum included. Used by tests and tools that
/// need a known footer; galleon itself never writes VHDs.
pub fn build(
    current_size: u64,
    disk_type: DiskType,
    creator_application: &[u8; 4],
) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(COOKIE);
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    let data_offset = if disk_type == DiskType::Fixed {
        u64::MAX
    } else {
        512
    };
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[28..32].copy_from_slice(creator_application);
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&current_size.to_be_bytes());
    f[48..56].copy_from_slice(&current_size.to_be_bytes());
    f[56..60].copy_from_slice(&[0xff, 0xff, 0x10, 0xff]);
    f[60..64].copy_from_slice(&disk_type.as_u32().to_be_bytes());
    f[68..84].copy_from_slice(&[0x5a; 16]);
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn ascii4(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches('\0')
        .to_string()
}

/// Shows bytes as text where printable, `\xNN` otherwise.
pub(crate) fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

pub(crate) fn uuid_like(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A footer written by `qemu-img create -f vpc -o subformat=fixed,force_size a.vhd 8M` (qemu 10).
    #[rustfmt::skip]
    const QEMU_FORCE_SIZE_8M: [u8; 96] = [
        0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x32, 0x94, 0x38, 0xac, 0x71, 0x65, 0x6d, 0x32,
        0x00, 0x05, 0x00, 0x03, 0x57, 0x69, 0x32, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0x10, 0xff, 0x00, 0x00, 0x00, 0x02,
        0xff, 0xff, 0xe3, 0xb6, 0xbe, 0x7d, 0x5e, 0x20, 0xe4, 0xf0, 0x4b, 0x2b, 0xb1, 0xac, 0xd0, 0x89,
        0x66, 0xf4, 0x39, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    fn qemu_footer() -> [u8; FOOTER_LEN] {
        let mut f = [0u8; FOOTER_LEN];
        f[..96].copy_from_slice(&QEMU_FORCE_SIZE_8M);
        f
    }

    #[test]
    fn parses_a_footer_written_by_qemu_img() {
        let f = Footer::parse(&qemu_footer()).expect("qemu footer parses");
        assert_eq!(f.features, 2);
        assert_eq!(f.file_format_version, 0x0001_0000);
        assert_eq!(f.data_offset, u64::MAX);
        assert_eq!(f.creator_application, "qem2");
        assert_eq!(f.creator_version, 0x0005_0003);
        assert_eq!(f.creator_host_os, "Wi2k");
        assert_eq!(f.original_size, 8 * 1024 * 1024);
        assert_eq!(f.current_size, 8 * 1024 * 1024);
        assert_eq!(
            f.geometry,
            Geometry {
                cylinders: 0xffff,
                heads: 16,
                sectors_per_track: 255
            }
        );
        assert_eq!(f.disk_type, DiskType::Fixed);
        assert_eq!(f.checksum, 0xffff_e3b6);
        assert!(
            f.checksum_ok(),
            "stored {:#x} computed {:#x}",
            f.checksum,
            f.computed_checksum
        );
        assert_eq!(f.unique_id, "be7d5e20-e4f0-4b2b-b1ac-d08966f43912");
        assert!(!f.saved_state);
        assert_eq!(f.timestamp_unix(), VHD_EPOCH_UNIX + 0x3294_38ac);
        assert!(!f.made_by_qemu_without_force_size());
    }

    #[test]
    fn a_flipped_byte_breaks_the_checksum() {
        for at in [0usize, 8, 48, 55, 63, 67, 100, 511] {
            let mut b = qemu_footer();
            b[at] ^= 0x01;
            match Footer::parse(&b) {
                Ok(f) => assert!(!f.checksum_ok(), "flip at {at} went unnoticed"),
                Err(FooterError::BadCookie { .. }) => {
                    assert!(at < 8, "flip at {at} broke the cookie")
                }
            }
        }
    }

    #[test]
    fn rejects_a_wrong_cookie_and_shows_what_it_found() {
        let mut b = qemu_footer();
        b[0..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
        let err = Footer::parse(&b).expect_err("not a footer");
        assert_eq!(
            err.to_string(),
            "no VHD footer: expected the cookie \"conectix\", found \"QFI\\xfb\\x00\\x00\\x00\\x03\""
        );
    }

    #[test]
    fn disk_types_round_trip() {
        for (v, t) in [
            (0, DiskType::None),
            (1, DiskType::Other(1)),
            (2, DiskType::Fixed),
            (3, DiskType::Dynamic),
            (4, DiskType::Differencing),
            (9, DiskType::Other(9)),
        ] {
            assert_eq!(DiskType::from_u32(v), t);
            assert_eq!(t.as_u32(), v);
        }
    }

    #[test]
    fn built_footers_parse_back() {
        let b = build(16 << 20, DiskType::Dynamic, b"test");
        let f = Footer::parse(&b).expect("parses");
        assert!(f.checksum_ok());
        assert_eq!(f.current_size, 16 << 20);
        assert_eq!(f.disk_type, DiskType::Dynamic);
        assert_eq!(f.creator_application, "test");
    }
}
