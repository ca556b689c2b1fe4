//! The OS disk layout of the VHDs the local Image Builder writes, as a build from the source would
//! leave it: generation 2 = a GPT (protective MBR, primary and backup headers with CRC32s) with an
//! EFI System Partition (FAT12) holding the removable-media boot loader `\EFI\BOOT\BOOTX64.EFI` or
//! `BOOTAA64.EFI` (a PE stub with the architecture's machine type) and an OS partition; generation 1
//! = an MBR with one active OS partition. The file systems' contents are not simulated.

/// Sector size.
const S: u64 = 512;
/// The EFI System Partition (and the OS partition after it) start at 1 MiB.
const ESP_START: u64 = 2048;
/// ESP length in sectors (1 MiB: a FAT12 volume).
const ESP_SECTORS: u64 = 2048;
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const LINUX_FS_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
const BASIC_DATA_TYPE: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";

/// What the disk boots as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot<'a> {
    /// `V1` or `V2`.
    pub generation: &'a str,
    /// `x64` or `Arm64`.
    pub architecture: &'a str,
    /// `Linux` or `Windows`.
    pub os_type: &'a str,
}

/// The writes (byte offset, 512-byte-multiple data) that lay out a disk of `size` bytes; empty when
/// the disk is too small to hold the layout (under 4 MiB).
pub fn layout(size: u64, boot: Boot<'_>) -> Vec<(u64, Vec<u8>)> {
    let total = size / S;
    if !size.is_multiple_of(S) || total < 2 * ESP_START + 34 {
        return Vec::new();
    }
    let windows = boot.os_type.eq_ignore_ascii_case("Windows");
    if boot.generation.eq_ignore_ascii_case("V1") {
        let os_type = if windows { 0x07 } else { 0x83 };
        return vec![(0, mbr(&[(0x80, os_type, ESP_START, total - ESP_START)]))];
    }
    let last = total - 1;
    let (first_usable, last_usable): (u64, u64) = (34, last - 33);
    let os_part = if windows {
        BASIC_DATA_TYPE
    } else {
        LINUX_FS_TYPE
    };
    let mut entries = vec![0u8; 128 * 128];
    entry(
        &mut entries[..128],
        ESP_TYPE,
        ESP_START,
        ESP_START + ESP_SECTORS - 1,
        "EFI System Partition",
    );
    entry(
        &mut entries[128..256],
        os_part,
        ESP_START + ESP_SECTORS,
        last_usable,
        if windows {
            "Basic data partition"
        } else {
            "root"
        },
    );
    let entries_crc = crc32fast::hash(&entries);
    let disk_guid = *uuid::Uuid::new_v4().as_bytes();
    let header = |current: u64, backup: u64, entries_lba: u64| {
        let mut h = vec![0u8; S as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let protective = (0x00, 0xEE, 1, (total - 1).min(u64::from(u32::MAX)));
    let mut primary = mbr(&[protective]);
    primary.extend(header(1, last, 2));
    primary.extend(&entries);
    let mut backup = entries.clone();
    backup.extend(header(last, 1, last - 32));
    vec![
        (0, primary),
        (ESP_START * S, esp(boot.architecture)),
        ((last - 32) * S, backup),
    ]
}

/// A master boot record with up to four (status, type, first LBA, sectors) partitions.
fn mbr(parts: &[(u8, u8, u64, u64)]) -> Vec<u8> {
    let mut m = vec![0u8; S as usize];
    for (i, (status, kind, start, sectors)) in parts.iter().enumerate().take(4) {
        let e = 446 + i * 16;
        m[e] = *status;
        // CHS fields are unused with LBA: the "beyond CHS" marker.
        m[e + 1..e + 4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        m[e + 4] = *kind;
        m[e + 5..e + 8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        m[e + 8..e + 12].copy_from_slice(&(*start as u32).to_le_bytes());
        m[e + 12..e + 16].copy_from_slice(&(*sectors).min(u64::from(u32::MAX)).to_le_bytes()[..4]);
    }
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

/// One 128-byte GPT partition entry.
fn entry(e: &mut [u8], type_guid: &str, first: u64, last: u64, name: &str) {
    let guid = uuid::Uuid::parse_str(type_guid).unwrap_or_default();
    e[0..16].copy_from_slice(&guid.to_bytes_le());
    e[16..32].copy_from_slice(&uuid::Uuid::new_v4().to_bytes_le());
    e[32..40].copy_from_slice(&first.to_le_bytes());
    e[40..48].copy_from_slice(&last.to_le_bytes());
    for (i, u) in name.encode_utf16().take(36).enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
}

/// The ESP: a FAT12 volume of [`ESP_SECTORS`] with `\EFI\BOOT\BOOT{X64,AA64}.EFI`.
fn esp(architecture: &str) -> Vec<u8> {
    const RESERVED: usize = 1;
    const FAT_SECTORS: usize = 6;
    const ROOT_ENTRIES: usize = 512;
    let root_sectors = ROOT_ENTRIES * 32 / S as usize;
    let data = RESERVED + 2 * FAT_SECTORS + root_sectors;
    let cluster = |c: usize| (data + c - 2) * S as usize;
    let mut v = vec![0u8; (data + 3) * S as usize];
    // Boot sector and BIOS parameter block.
    let b = &mut v[..S as usize];
    b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    b[3..11].copy_from_slice(b"DEVCLOUD");
    b[11..13].copy_from_slice(&(S as u16).to_le_bytes());
    b[13] = 1;
    b[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    b[16] = 2;
    b[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    b[19..21].copy_from_slice(&(ESP_SECTORS as u16).to_le_bytes());
    b[21] = 0xF8;
    b[22..24].copy_from_slice(&(FAT_SECTORS as u16).to_le_bytes());
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&(ESP_START as u32).to_le_bytes());
    b[36] = 0x80;
    b[38] = 0x29;
    b[39..43].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..4]);
    b[43..54].copy_from_slice(b"EFI        ");
    b[54..62].copy_from_slice(b"FAT12   ");
    b[510] = 0x55;
    b[511] = 0xAA;
    // Both FATs: media, reserved, then clusters 2 (EFI), 3 (BOOT), 4 (the loader), each one cluster.
    let mut fat = vec![0u8; FAT_SECTORS * S as usize];
    for (c, val) in [
        (0usize, 0xFF8u16),
        (1, 0xFFF),
        (2, 0xFFF),
        (3, 0xFFF),
        (4, 0xFFF),
    ] {
        let off = c + c / 2;
        if c % 2 == 0 {
            fat[off] = (val & 0xFF) as u8;
            fat[off + 1] = (fat[off + 1] & 0xF0) | ((val >> 8) as u8 & 0x0F);
        } else {
            fat[off] = (fat[off] & 0x0F) | (((val & 0x0F) as u8) << 4);
            fat[off + 1] = (val >> 4) as u8;
        }
    }
    for i in 0..2 {
        let at = (RESERVED + i * FAT_SECTORS) * S as usize;
        v[at..at + fat.len()].copy_from_slice(&fat);
    }
    let dirent = |v: &mut [u8], at: usize, name: &[u8; 11], attr: u8, first: u16, size: u32| {
        v[at..at + 11].copy_from_slice(name);
        v[at + 11] = attr;
        // Created and written 1980-01-01 (the first DOS date).
        v[at + 16..at + 18].copy_from_slice(&0x0021u16.to_le_bytes());
        v[at + 24..at + 26].copy_from_slice(&0x0021u16.to_le_bytes());
        v[at + 26..at + 28].copy_from_slice(&first.to_le_bytes());
        v[at + 28..at + 32].copy_from_slice(&size.to_le_bytes());
    };
    let root = (RESERVED + 2 * FAT_SECTORS) * S as usize;
    dirent(&mut v, root, b"EFI        ", 0x10, 2, 0);
    dirent(&mut v, cluster(2), b".          ", 0x10, 2, 0);
    dirent(&mut v, cluster(2) + 32, b"..         ", 0x10, 0, 0);
    dirent(&mut v, cluster(2) + 64, b"BOOT       ", 0x10, 3, 0);
    dirent(&mut v, cluster(3), b".          ", 0x10, 3, 0);
    dirent(&mut v, cluster(3) + 32, b"..         ", 0x10, 2, 0);
    let (name, machine): (&[u8; 11], u16) = if architecture.eq_ignore_ascii_case("Arm64") {
        (b"BOOTAA64EFI", 0xAA64)
    } else {
        (b"BOOTX64 EFI", 0x8664)
    };
    dirent(&mut v, cluster(3) + 64, name, 0x20, 4, S as u32);
    // The loader: a PE header stub (MZ, e_lfanew, PE signature, machine type).
    let pe = cluster(4);
    v[pe..pe + 2].copy_from_slice(b"MZ");
    v[pe + 0x3C..pe + 0x40].copy_from_slice(&0x40u32.to_le_bytes());
    v[pe + 0x40..pe + 0x44].copy_from_slice(b"PE\0\0");
    v[pe + 0x44..pe + 0x46].copy_from_slice(&machine.to_le_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt_headers_check_out_and_v1_is_one_active_partition() {
        let size = 8 << 20;
        let w = layout(
            size,
            Boot {
                generation: "V2",
                architecture: "x64",
                os_type: "Linux",
            },
        );
        assert_eq!(w.len(), 3);
        let primary = &w[0].1;
        assert_eq!(primary[450], 0xEE);
        let h = &primary[512..1024];
        assert_eq!(&h[0..8], b"EFI PART");
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(
            crc32fast::hash(&zeroed).to_le_bytes(),
            [h[16], h[17], h[18], h[19]]
        );
        assert_eq!(
            crc32fast::hash(&primary[1024..1024 + 16384]).to_le_bytes(),
            [h[88], h[89], h[90], h[91]]
        );
        // The backup header is the disk's last sector.
        let (at, backup) = &w[2];
        assert_eq!(at + backup.len() as u64, size);
        assert_eq!(&backup[backup.len() - 512..][..8], b"EFI PART");
        let v1 = layout(
            size,
            Boot {
                generation: "V1",
                architecture: "x64",
                os_type: "Windows",
            },
        );
        assert_eq!(v1.len(), 1);
        assert_eq!((v1[0].1[446], v1[0].1[450]), (0x80, 0x07));
        assert!(
            layout(
                1 << 20,
                Boot {
                    generation: "V2",
                    architecture: "x64",
                    os_type: "Linux"
                }
            )
            .is_empty()
        );
    }
}
