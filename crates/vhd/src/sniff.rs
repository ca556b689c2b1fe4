//! Recognises what a blob is from its first bytes when it is not a fixed VHD: VHDX, dynamic or
//! differencing VHD, QCOW2, VMDK, VDI, ISO, archives, text. Pure, no I/O.

use serde::{Deserialize, Serialize};

use crate::footer::{DiskType, FOOTER_LEN, Footer};

/// A format recognised from magic bytes at the start of the blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sniffed {
    /// `vhdxfile` at offset 0.
    Vhdx,
    /// A footer copy (`conectix`) at offset 0, the dynamic header (`cxsparse`) at 512.
    SparseVhd {
        disk_type: DiskType,
        virtual_size: u64,
    },
    /// `QFI\xfb`.
    Qcow2,
    /// `QED\0`.
    Qed,
    /// `KDMV` (sparse extent) or a `# Disk DescriptorFile` text descriptor.
    Vmdk,
    /// VirtualBox disk image (`<<< … >>>` banner, magic 0xBEDA107F at 0x40).
    Vdi,
    /// ISO 9660 (`CD001` at 0x8001).
    Iso,
    Zip,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    SevenZip,
    /// POSIX tar (`ustar` at 257); OVA files are tar archives.
    Tar,
    /// Text (no NUL bytes, valid UTF-8 in what was read).
    Text,
}

impl Sniffed {
    /// How to name it in a message: "a QCOW2 image", …
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Vhdx => "a VHDX image",
            Self::SparseVhd {
                disk_type: DiskType::Differencing,
                ..
            } => "a differencing VHD",
            Self::SparseVhd { .. } => "a dynamic VHD",
            Self::Qcow2 => "a QCOW2 image",
            Self::Qed => "a QED image",
            Self::Vmdk => "a VMDK image",
            Self::Vdi => "a VirtualBox VDI image",
            Self::Iso => "an ISO 9660 image",
            Self::Zip => "a zip archive",
            Self::Gzip => "a gzip-compressed file",
            Self::Xz => "an xz-compressed file",
            Self::Zstd => "a zstd-compressed file",
            Self::Bzip2 => "a bzip2-compressed file",
            Self::SevenZip => "a 7z archive",
            Self::Tar => "a tar archive (an OVA is one)",
            Self::Text => "a text file",
        }
    }

    /// The `qemu-img` input format name, when qemu-img can read it directly.
    pub fn qemu_format(&self) -> Option<&'static str> {
        match self {
            Self::Vhdx => Some("vhdx"),
            Self::SparseVhd { .. } => Some("vpc"),
            Self::Qcow2 => Some("qcow2"),
            Self::Qed => Some("qed"),
            Self::Vmdk => Some("vmdk"),
            Self::Vdi => Some("vdi"),
            _ => None,
        }
    }
}

/// Recognises a format from the blob's first bytes. Returns `None` for anything else, including
/// raw disk data (which is what a fixed VHD starts with).
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"vhdxfile") {
        return Some(Sniffed::Vhdx);
    }
    if at(0, b"conectix") && at(FOOTER_LEN, b"cxsparse") {
        let (disk_type, virtual_size) = head
            .get(..FOOTER_LEN)
            .and_then(|b| <&[u8; FOOTER_LEN]>::try_from(b).ok())
            .and_then(|b| Footer::parse(b).ok())
            .map_or((DiskType::Dynamic, 0), |f| (f.disk_type, f.current_size));
        return Some(Sniffed::SparseVhd {
            disk_type,
            virtual_size,
        });
    }
    let magics: [(usize, &[u8], Sniffed); 14] = [
        (0, b"QFI\xfb", Sniffed::Qcow2),
        (0, b"QED\0", Sniffed::Qed),
        (0, b"KDMV", Sniffed::Vmdk),
        (0, b"# Disk DescriptorFile", Sniffed::Vmdk),
        (0x40, &[0x7f, 0x10, 0xda, 0xbe], Sniffed::Vdi),
        (0x8001, b"CD001", Sniffed::Iso),
        (0, b"PK\x03\x04", Sniffed::Zip),
        (0, &[0x1f, 0x8b], Sniffed::Gzip),
        (0, &[0xfd, b'7', b'z', b'X', b'Z', 0], Sniffed::Xz),
        (0, &[0x28, 0xb5, 0x2f, 0xfd], Sniffed::Zstd),
        (0, b"BZh", Sniffed::Bzip2),
        (0, &[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], Sniffed::SevenZip),
        (257, b"ustar", Sniffed::Tar),
        (0, b"<<< ", Sniffed::Vdi),
    ];
    if let Some((_, _, s)) = magics.into_iter().find(|(o, m, _)| at(*o, m)) {
        return Some(s);
    }
    looks_like_text(head).then_some(Sniffed::Text)
}

/// Text: non-empty, no NUL or other control bytes besides whitespace, valid UTF-8 (a character cut
/// at the end of what was read is allowed).
fn looks_like_text(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(4096)];
    if sample.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    valid
        && sample
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footer;

    fn with(offset: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 64 * 1024];
        v[offset..offset + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn table_of_magics() {
        let mut dynamic = with(512, b"cxsparse");
        dynamic[..512].copy_from_slice(&footer::build(8 << 20, DiskType::Dynamic, b"qemu"));
        let mut differencing = with(512, b"cxsparse");
        differencing[..512].copy_from_slice(&footer::build(
            8 << 20,
            DiskType::Differencing,
            b"win ",
        ));
        let cases: Vec<(&str, Vec<u8>, Option<Sniffed>)> = vec![
            ("vhdx", with(0, b"vhdxfile"), Some(Sniffed::Vhdx)),
            (
                "dynamic",
                dynamic,
                Some(Sniffed::SparseVhd {
                    disk_type: DiskType::Dynamic,
                    virtual_size: 8 << 20,
                }),
            ),
            (
                "differencing",
                differencing,
                Some(Sniffed::SparseVhd {
                    disk_type: DiskType::Differencing,
                    virtual_size: 8 << 20,
                }),
            ),
            (
                "conectix without cxsparse is disk data",
                with(0, b"conectix"),
                None,
            ),
            ("qcow2", with(0, b"QFI\xfb\0\0\0\x03"), Some(Sniffed::Qcow2)),
            ("vmdk sparse", with(0, b"KDMV"), Some(Sniffed::Vmdk)),
            (
                "vmdk descriptor",
                b"# Disk DescriptorFile\nversion=1\n".to_vec(),
                Some(Sniffed::Vmdk),
            ),
            (
                "vdi",
                with(0x40, &[0x7f, 0x10, 0xda, 0xbe]),
                Some(Sniffed::Vdi),
            ),
            ("iso", with(0x8001, b"CD001"), Some(Sniffed::Iso)),
            ("zip", with(0, b"PK\x03\x04"), Some(Sniffed::Zip)),
            ("gzip", with(0, &[0x1f, 0x8b, 8]), Some(Sniffed::Gzip)),
            (
                "xz",
                with(0, &[0xfd, b'7', b'z', b'X', b'Z', 0]),
                Some(Sniffed::Xz),
            ),
            (
                "zstd",
                with(0, &[0x28, 0xb5, 0x2f, 0xfd]),
                Some(Sniffed::Zstd),
            ),
            ("tar", with(257, b"ustar"), Some(Sniffed::Tar)),
            (
                "text",
                b"hello, I am not a disk\n".to_vec(),
                Some(Sniffed::Text),
            ),
            (
                "utf-8 text cut mid-character",
                "caf\u{e9}".as_bytes()[..4].to_vec(),
                Some(Sniffed::Text),
            ),
            ("zeros", vec![0u8; 4096], None),
            ("empty", vec![], None),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(sniff(&bytes), want, "{name}");
        }
    }
}
