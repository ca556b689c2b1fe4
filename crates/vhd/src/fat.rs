//! The parts of a FAT12/16/32 file system the boot-loader check needs, parsed from bytes: the boot
//! sector's BIOS parameter block, FAT entries and 32-byte directory entries. Pure and panic-free on
//! any input (every read goes through `get`).

use serde::{Deserialize, Serialize};

/// FAT variant, decided by the cluster count as the Microsoft FAT specification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

impl std::fmt::Display for FatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fat12 => "FAT12",
            Self::Fat16 => "FAT16",
            Self::Fat32 => "FAT32",
        })
    }
}

/// Where the root directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// FAT12/16: a fixed region (byte offset from the volume start, length).
    Region { offset: u64, len: u64 },
    /// FAT32: a cluster chain starting here.
    Cluster(u32),
}

/// A FAT volume's layout, from its boot sector. Offsets are bytes from the start of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Volume {
    pub kind: FatKind,
    pub bytes_per_sector: u64,
    pub cluster_size: u64,
    /// First FAT.
    pub fat_offset: u64,
    pub fat_len: u64,
    pub data_offset: u64,
    /// Data clusters, numbered 2..cluster_count + 2.
    pub cluster_count: u32,
    pub root: Root,
    /// total sectors × bytes per sector.
    pub len: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Volume {
    /// Parses the boot sector (the volume's first 512 bytes). The error says why it is no FAT.
    pub fn parse(boot: &[u8]) -> Result<Self, String> {
        let missing = || "the boot sector is shorter than 512 bytes".to_string();
        if boot.get(510..512).ok_or_else(missing)? != [0x55, 0xAA] {
            return Err("the boot sector has no 0x55AA signature".into());
        }
        let bps = le16(boot, 11).ok_or_else(missing)?;
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(format!(
                "bytes per sector is {bps}, not 512, 1024, 2048 or 4096"
            ));
        }
        let spc = *boot.get(13).ok_or_else(missing)?;
        if spc == 0 || !spc.is_power_of_two() {
            return Err(format!("sectors per cluster is {spc}, not a power of two"));
        }
        let reserved = le16(boot, 14).ok_or_else(missing)?;
        let fats = *boot.get(16).ok_or_else(missing)?;
        let root_entries = le16(boot, 17).ok_or_else(missing)?;
        let total16 = le16(boot, 19).ok_or_else(missing)?;
        let fat16_size = le16(boot, 22).ok_or_else(missing)?;
        let total32 = le32(boot, 32).ok_or_else(missing)?;
        let fat32_size = le32(boot, 36).ok_or_else(missing)?;
        let root_cluster = le32(boot, 44).ok_or_else(missing)?;
        if reserved == 0 || fats == 0 {
            return Err(format!(
                "{reserved} reserved sectors and {fats} FATs (both must be at least 1)"
            ));
        }
        let total = if total16 != 0 {
            u64::from(total16)
        } else {
            u64::from(total32)
        };
        let fat_sectors = if fat16_size != 0 {
            u64::from(fat16_size)
        } else {
            u64::from(fat32_size)
        };
        let bps = u64::from(bps);
        let root_sectors = (u64::from(root_entries) * 32).div_ceil(bps);
        let meta = u64::from(reserved) + u64::from(fats) * fat_sectors + root_sectors;
        if fat_sectors == 0 || total <= meta {
            return Err(format!(
                "{total} sectors in all but {meta} for reserved sectors, FATs and root directory"
            ));
        }
        let clusters = (total - meta) / u64::from(spc);
        let kind = if clusters < 4085 {
            FatKind::Fat12
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        let cluster_count = u32::try_from(clusters)
            .ok()
            .filter(|&c| c <= 0x0FFF_FFF5)
            .ok_or_else(|| format!("{clusters} clusters is more than FAT32 can address"))?;
        let fat_offset = u64::from(reserved) * bps;
        let fat_len = fat_sectors * bps;
        let root_offset = fat_offset + u64::from(fats) * fat_len;
        let root = match kind {
            FatKind::Fat32 => {
                if root_cluster < 2 || root_cluster >= cluster_count.saturating_add(2) {
                    return Err(format!(
                        "the root directory cluster {root_cluster} is outside 2..{}",
                        u64::from(cluster_count) + 2
                    ));
                }
                Root::Cluster(root_cluster)
            }
            _ => {
                if root_entries == 0 {
                    return Err("FAT12/16 volume with a root directory of 0 entries".into());
                }
                Root::Region {
                    offset: root_offset,
                    len: root_sectors * bps,
                }
            }
        };
        let fat_entry_bits: u64 = match kind {
            FatKind::Fat12 => 12,
            FatKind::Fat16 => 16,
            FatKind::Fat32 => 32,
        };
        if (clusters + 2) * fat_entry_bits > fat_len * 8 {
            return Err(format!(
                "the FAT ({fat_len} bytes) is too small for {clusters} clusters"
            ));
        }
        Ok(Self {
            kind,
            bytes_per_sector: bps,
            cluster_size: bps * u64::from(spc),
            fat_offset,
            fat_len,
            data_offset: root_offset + root_sectors * bps,
            cluster_count,
            root,
            len: total * bps,
        })
    }

    /// Byte offset of data cluster `c` in the volume, or `None` when `c` is no data cluster.
    pub fn cluster_offset(&self, c: u32) -> Option<u64> {
        if c < 2 || u64::from(c) >= u64::from(self.cluster_count) + 2 {
            return None;
        }
        Some(self.data_offset + u64::from(c - 2) * self.cluster_size)
    }

    /// Where cluster `c`'s FAT entry is: (byte offset in the volume, bytes to read).
    pub fn fat_entry_location(&self, c: u32) -> (u64, u64) {
        let c = u64::from(c);
        match self.kind {
            FatKind::Fat12 => (self.fat_offset + c + c / 2, 2),
            FatKind::Fat16 => (self.fat_offset + c * 2, 2),
            FatKind::Fat32 => (self.fat_offset + c * 4, 4),
        }
    }

    /// Decodes cluster `c`'s FAT entry from its bytes (as located by [`Self::fat_entry_location`]).
    pub fn decode_fat_entry(&self, c: u32, raw: &[u8]) -> Option<Link> {
        let (value, end, bad) = match self.kind {
            FatKind::Fat12 => {
                let v = le16(raw, 0)?;
                let v = if c % 2 == 1 { v >> 4 } else { v & 0x0FFF };
                (u32::from(v), 0xFF8, 0xFF7)
            }
            FatKind::Fat16 => (u32::from(le16(raw, 0)?), 0xFFF8, 0xFFF7),
            FatKind::Fat32 => (le32(raw, 0)? & 0x0FFF_FFFF, 0x0FFF_FFF8, 0x0FFF_FFF7),
        };
        Some(if value >= end {
            Link::End
        } else if value == bad || value == 0 || self.cluster_offset(value).is_none() {
            Link::Broken(value)
        } else {
            Link::Next(value)
        })
    }
}

/// What a FAT entry says follows a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Next(u32),
    End,
    /// Free, bad or out of range: the chain is damaged.
    Broken(u32),
}

/// One 32-byte short-name directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 8.3 name as stored: 8 name bytes and 3 extension bytes, space-padded, upper-cased here.
    pub name: [u8; 11],
    pub is_dir: bool,
    pub first_cluster: u32,
    pub size: u32,
}

/// What a directory slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// 0x00 in the first name byte: no entries follow.
    End,
    /// Deleted, long-file-name part, volume label, or a `.`/`..` entry.
    Skip,
    Entry(Entry),
}

impl Slot {
    pub fn parse(e: &[u8], kind: FatKind) -> Self {
        let (Some(name), Some(&attr)) = (e.get(0..11), e.get(11)) else {
            return Self::End;
        };
        if name.first() == Some(&0) {
            return Self::End;
        }
        if name.first() == Some(&0xE5) || name.first() == Some(&b'.') || attr & 0x08 != 0 {
            // Deleted, dot entries, and volume labels (0x08, which long-name parts 0x0F include).
            return Self::Skip;
        }
        let mut upper = [b' '; 11];
        for (u, b) in upper.iter_mut().zip(name) {
            *u = b.to_ascii_uppercase();
        }
        let hi = if kind == FatKind::Fat32 {
            le16(e, 20).unwrap_or(0)
        } else {
            0
        };
        Self::Entry(Entry {
            name: upper,
            is_dir: attr & 0x10 != 0,
            first_cluster: (u32::from(hi) << 16) | u32::from(le16(e, 26).unwrap_or(0)),
            size: le32(e, 28).unwrap_or(0),
        })
    }
}

/// `"BOOTX64.EFI"` → `*b"BOOTX64 EFI"` (upper case, space-padded 8.3 form).
pub(crate) fn short_name(name: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
    for (o, b) in out[..8].iter_mut().zip(stem.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    for (o, b) in out[8..].iter_mut().zip(ext.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A boot sector with the given geometry.
    fn boot(
        bps: u16,
        spc: u8,
        reserved: u16,
        root_entries: u16,
        total: u32,
        fat_size: u32,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0xEB;
        b[11..13].copy_from_slice(&bps.to_le_bytes());
        b[13] = spc;
        b[14..16].copy_from_slice(&reserved.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&root_entries.to_le_bytes());
        if root_entries == 0 {
            b[32..36].copy_from_slice(&total.to_le_bytes());
            b[36..40].copy_from_slice(&fat_size.to_le_bytes());
            b[44..48].copy_from_slice(&2u32.to_le_bytes());
        } else {
            match u16::try_from(total) {
                Ok(t) => b[19..21].copy_from_slice(&t.to_le_bytes()),
                Err(_) => b[32..36].copy_from_slice(&total.to_le_bytes()),
            }
            b[22..24].copy_from_slice(&(fat_size as u16).to_le_bytes());
        }
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn kinds_follow_the_cluster_count() {
        // 2 MiB, 1 sector per cluster: ~4000 clusters → FAT12.
        let v = Volume::parse(&boot(512, 1, 1, 512, 4096, 12)).expect("FAT12");
        assert_eq!(v.kind, FatKind::Fat12);
        assert_eq!(
            v.root,
            Root::Region {
                offset: 512 * 25,
                len: 16384
            }
        );
        assert_eq!(v.data_offset, 512 * 57);
        // 64 MiB, 4 sectors per cluster: ~32,700 clusters → FAT16.
        let v = Volume::parse(&boot(512, 4, 4, 512, 131_072, 128)).expect("FAT16");
        assert_eq!(v.kind, FatKind::Fat16);
        assert_eq!(v.cluster_size, 2048);
        // 300 MiB, 1 sector per cluster, FAT32.
        let v = Volume::parse(&boot(512, 1, 32, 0, 614_400, 4800)).expect("FAT32");
        assert_eq!(v.kind, FatKind::Fat32);
        assert_eq!(v.root, Root::Cluster(2));
        assert_eq!(v.cluster_offset(2), Some(v.data_offset));
        assert_eq!(v.cluster_offset(1), None);
        assert_eq!(v.cluster_offset(v.cluster_count + 2), None);
    }

    #[test]
    fn bad_boot_sectors_say_why() {
        for (name, mut b, want) in [
            ("short", vec![0u8; 100], "shorter"),
            ("no signature", boot(512, 1, 1, 512, 4096, 12), "signature"),
            (
                "odd sector size",
                boot(500, 1, 1, 512, 4096, 12),
                "bytes per sector",
            ),
            (
                "3 sectors/cluster",
                boot(512, 3, 1, 512, 4096, 12),
                "power of two",
            ),
            ("no FAT", boot(512, 1, 1, 512, 4096, 0), "sectors in all"),
            ("FAT too small", boot(512, 1, 1, 512, 4096, 1), "too small"),
            ("all zero", vec![0u8; 512], "signature"),
        ] {
            if name == "no signature" {
                b[510] = 0;
            }
            if name == "all zero" {
                // Signature alone is not enough.
                let mut z = b.clone();
                z[510] = 0x55;
                z[511] = 0xAA;
                let err = Volume::parse(&z).expect_err("zeros are no FAT");
                assert!(err.contains("bytes per sector"), "{err}");
            }
            let err = Volume::parse(&b).expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn fat_entries_decode_for_each_kind() {
        let v12 = Volume::parse(&boot(512, 1, 1, 512, 4096, 12)).expect("FAT12");
        // Clusters 2 and 3 share 3 bytes: 2 → 3, 3 → end (0xFFF).
        let fat = [0x03u8, 0xF0, 0xFF];
        assert_eq!(v12.fat_entry_location(2), (512 + 3, 2));
        assert_eq!(v12.decode_fat_entry(2, &fat[0..2]), Some(Link::Next(3)));
        assert_eq!(v12.decode_fat_entry(3, &fat[1..3]), Some(Link::End));
        assert_eq!(v12.decode_fat_entry(2, &[0, 0]), Some(Link::Broken(0)));
        assert_eq!(
            v12.decode_fat_entry(2, &[0xF7, 0x0F]),
            Some(Link::Broken(0xFF7))
        );
        assert_eq!(v12.decode_fat_entry(2, &[1]), None);
        let v32 = Volume::parse(&boot(512, 1, 32, 0, 614_400, 4800)).expect("FAT32");
        assert_eq!(
            v32.decode_fat_entry(5, &[0xFF, 0xFF, 0xFF, 0xFF]),
            Some(Link::End)
        );
        assert_eq!(
            v32.decode_fat_entry(5, &9u32.to_le_bytes()),
            Some(Link::Next(9))
        );
        assert_eq!(
            v32.decode_fat_entry(5, &0x0FFF_FFF0u32.to_le_bytes()),
            Some(Link::Broken(0x0FFF_FFF0))
        );
    }

    #[test]
    fn directory_slots() {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(b"bootx64 efi");
        e[11] = 0x20;
        e[20..22].copy_from_slice(&1u16.to_le_bytes());
        e[26..28].copy_from_slice(&7u16.to_le_bytes());
        e[28..32].copy_from_slice(&1234u32.to_le_bytes());
        let Slot::Entry(entry) = Slot::parse(&e, FatKind::Fat32) else {
            panic!("an entry");
        };
        assert_eq!(entry.name, short_name("BootX64.efi"));
        assert_eq!(entry.first_cluster, 0x1_0007);
        assert!(!entry.is_dir);
        assert_eq!(entry.size, 1234);
        let Slot::Entry(entry) = Slot::parse(&e, FatKind::Fat16) else {
            panic!("an entry");
        };
        assert_eq!(entry.first_cluster, 7, "FAT16 has no high cluster word");
        e[11] = 0x0F;
        assert_eq!(
            Slot::parse(&e, FatKind::Fat32),
            Slot::Skip,
            "long name part"
        );
        e[11] = 0x10;
        e[0] = 0xE5;
        assert_eq!(Slot::parse(&e, FatKind::Fat32), Slot::Skip, "deleted");
        e[0] = 0;
        assert_eq!(Slot::parse(&e, FatKind::Fat32), Slot::End);
        assert_eq!(Slot::parse(&e[..5], FatKind::Fat32), Slot::End);
        assert_eq!(&short_name("EFI"), b"EFI        ");
    }
}
