//! Rejections of bad input: a stable code, a message naming the cause with its numbers, and the fix
//! (usually the exact `qemu-img` command). Serializable so they can travel in events.

use serde::{Deserialize, Serialize};

/// One MiB: Azure wants virtual sizes that are a multiple of it.
pub const MIB: u64 = 1 << 20;

/// Stable codes of rejections. Their names (as serialized) are part of galleon's event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProblemCode {
    /// The blob has no bytes.
    BlobEmpty,
    /// The blob is not a VHD (and not a disk image we can name as a VHD variant).
    NotAVhd,
    /// The blob is a VHDX; Azure takes only VHD.
    VhdxNotSupported,
    /// The VHD is dynamic (sparse); Azure takes only fixed VHDs.
    VhdIsDynamic,
    /// The VHD is a differencing disk (needs its parent); Azure takes only fixed VHDs.
    VhdIsDifferencing,
    /// The footer names a disk type the specification does not define.
    VhdUnsupportedDiskType,
    /// The footer's checksum does not match its bytes.
    VhdFooterChecksum,
    /// The blob ends inside the VHD footer, or before a whole sector: it was cut short.
    VhdTruncated,
    /// The blob looks like a disk but its last 512 bytes are not a VHD footer (raw image, an
    /// upload that has not finished, or one cut at a sector boundary).
    VhdFooterMissing,
    /// The footer's virtual size + 512 is not the blob's length.
    VhdSizeMismatch,
    /// The virtual size is not a multiple of 1 MiB.
    VhdSizeNotAligned,
    /// The virtual size is below the minimum.
    VhdTooSmall,
    /// The virtual size is above the gallery limit.
    VhdTooLarge,
    /// The partition table is damaged (bad GPT CRC, missing GPT behind a protective MBR, …).
    PartitionTableInvalid,
    /// The declared Hyper-V generation cannot boot this disk's partition layout.
    GenerationMismatch,
    /// A feature (Trusted Launch, confidential VM, Arm64) needs Hyper-V generation V2, and the
    /// declared generation or the disk's layout is generation 1.
    FeatureNeedsGenerationV2,
    /// The disk's removable-media boot loader is for another architecture than the one declared.
    ArchitectureMismatch,
    /// A data disk carries an OS disk's partition layout (an EFI System Partition, a BIOS boot
    /// partition, or an active MBR partition).
    DataDiskHasOsLayout,
    /// Two data disks were given the same LUN.
    DuplicateLun,
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A rejection: what is wrong with the blob and how to fix it. `Display` gives one log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message} Fix: {fix}")]
pub struct Problem {
    pub code: ProblemCode,
    /// The cause, with the numbers that show it.
    pub message: String,
    /// What the uploader should do, with exact commands where there are any.
    pub fix: String,
}

impl Problem {
    pub(crate) fn new(
        code: ProblemCode,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// `8388608` → `8,388,608`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `8388608` → `8,388,608 bytes (8 MiB)`; the unit part only when it is exact in MiB or GiB.
pub fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;
    let unit = if n >= TIB && n.is_multiple_of(TIB) {
        format!(" ({} TiB)", n / TIB)
    } else if n >= GIB && n.is_multiple_of(GIB) {
        format!(" ({} GiB)", n / GIB)
    } else if n >= MIB && n.is_multiple_of(MIB) {
        format!(" ({} MiB)", n / MIB)
    } else {
        String::new()
    };
    format!("{} bytes{unit}", thousands(n))
}

/// Names used in fix commands, derived from the blob name.
pub(crate) struct Names {
    /// The blob's file name, shell-quoted when needed.
    pub input: String,
    /// `<stem>.raw`, shell-quoted.
    pub raw: String,
    /// `<stem>-fixed.vhd`, shell-quoted.
    pub output: String,
}

impl Names {
    pub fn from_blob(blob_name: &str) -> Self {
        let file = blob_name
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("disk.vhd");
        let lower = file.to_ascii_lowercase();
        let stem = [".vhd", ".vhdx", ".qcow2", ".vmdk", ".img", ".raw"]
            .iter()
            .find(|ext| lower.ends_with(*ext) && lower.len() > ext.len())
            .map_or(file, |ext| &file[..file.len() - ext.len()]);
        Self {
            input: shell_word(file),
            raw: shell_word(&format!("{stem}.raw")),
            output: shell_word(&format!("{stem}-fixed.vhd")),
        }
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+,=:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Rounds up to the next multiple of 1 MiB.
pub fn align_up_mib(n: u64) -> u64 {
    n.div_ceil(MIB).saturating_mul(MIB)
}

/// The command that turns `input` (in qemu-img format `format`) into a fixed VHD Azure accepts.
/// When the virtual size is known and not a multiple of 1 MiB, the raw + resize route is given.
pub(crate) fn convert_fix(
    names: &Names,
    format: Option<&str>,
    virtual_size: Option<u64>,
) -> String {
    let f = format.map(|f| format!("-f {f} ")).unwrap_or_default();
    match virtual_size {
        Some(size) if !size.is_multiple_of(MIB) => format!(
            "Convert it to a fixed VHD whose size is a multiple of 1 MiB, then upload the result: \
             `qemu-img convert {f}-O raw {input} {raw} && qemu-img resize -f raw {raw} {aligned} && \
             qemu-img convert -f raw -O vpc -o subformat=fixed,force_size {raw} {output}`.",
            input = names.input,
            raw = names.raw,
            output = names.output,
            aligned = align_up_mib(size),
        ),
        _ => format!(
            "Convert it to a fixed VHD and upload the result: `qemu-img convert {f}-O vpc -o \
             subformat=fixed,force_size {input} {output}` (the virtual size must be a multiple of 1 MiB; \
             if `qemu-img info` shows otherwise, `qemu-img resize` it up to the next MiB first).",
            input = names.input,
            output = names.output,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(512), "512");
        assert_eq!(thousands(8_388_608), "8,388,608");
        assert_eq!(bytes(8_388_608), "8,388,608 bytes (8 MiB)");
        assert_eq!(bytes(8_389_120), "8,389,120 bytes");
        assert_eq!(bytes(2 << 40), "2,199,023,255,552 bytes (2 TiB)");
        assert_eq!(bytes(3 << 30), "3,221,225,472 bytes (3 GiB)");
        assert_eq!(align_up_mib(104_865_792), 101 * MIB);
        assert_eq!(align_up_mib(8 * MIB), 8 * MIB);
    }

    #[test]
    fn names_come_from_the_blob_name() {
        let n = Names::from_blob("uploads/ubuntu-24.04.VHD");
        assert_eq!(n.input, "ubuntu-24.04.VHD");
        assert_eq!(n.raw, "ubuntu-24.04.raw");
        assert_eq!(n.output, "ubuntu-24.04-fixed.vhd");
        let n = Names::from_blob("my disk's.vhdx");
        assert_eq!(n.input, r"'my disk'\''s.vhdx'");
        assert_eq!(n.output, r"'my disk'\''s-fixed.vhd'");
        assert_eq!(Names::from_blob("").input, "disk.vhd");
    }

    #[test]
    fn problems_serialize_with_stable_codes_and_display_on_one_line() {
        let p = Problem::new(ProblemCode::VhdIsDynamic, "It is dynamic.", "Convert it.");
        let json = serde_json::to_value(&p).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"code": "VhdIsDynamic", "message": "It is dynamic.", "fix": "Convert it."})
        );
        let back: Problem = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, p);
        assert_eq!(
            p.to_string(),
            "VhdIsDynamic: It is dynamic. Fix: Convert it."
        );
    }
}
