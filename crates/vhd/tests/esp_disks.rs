//! The boot-loader check on real disks: FAT12/16/32 file systems made by `mkfs.vfat` and filled by
//! mtools, in GPT and MBR partitions of fixed VHDs made by `qemu-img`. Each disk's loaders are found
//! (or the check says why it could not look) within the read cap.

mod common;

use std::path::Path;

use common::disks::{Fat, Table, boot_disk, disk, fat_image, pe_stub, tools_available};
use vhd::{
    Architecture, CountingReader, ESP_READ_CAP, Expectations, FatKind, FileReader, Generation,
    LoaderOutcome, LoaderScan, Unchecked, find_boot_loaders, inspect,
};

const X64: u16 = 0x8664;
const AA64: u16 = 0xAA64;

/// Inspects the VHD, then looks for its loaders through a counting reader.
async fn scan_disk(path: &Path) -> (vhd::Inspection, LoaderScan) {
    let file = FileReader::open(path).expect("open test disk");
    let len = file.len();
    let inspection = inspect(&file, len, &Expectations::new("disk.vhd"))
        .await
        .unwrap_or_else(|e| panic!("{}: not accepted: {e}", path.display()));
    let reader = CountingReader::new(file);
    let scan = find_boot_loaders(
        &reader,
        &inspection.partition_scheme,
        inspection.virtual_size,
    )
    .await
    .expect("local reads do not fail");
    assert_eq!(scan.reads as usize, reader.reads(), "reads are counted");
    assert_eq!(scan.bytes_read, reader.bytes_read(), "bytes are counted");
    assert!(scan.bytes_read <= ESP_READ_CAP, "{scan:?}");
    for (offset, len) in reader.ranges() {
        assert!(
            offset + len <= inspection.virtual_size,
            "read past the disk"
        );
    }
    eprintln!(
        "{}: {:?} in {} reads, {} bytes",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
        scan.outcome,
        scan.reads,
        scan.bytes_read
    );
    (inspection, scan)
}

fn checked(scan: &LoaderScan) -> (FatKind, Vec<Architecture>) {
    match &scan.outcome {
        LoaderOutcome::Checked { fat, loaders, .. } => {
            (*fat, loaders.iter().map(|l| l.architecture).collect())
        }
        other => panic!("expected the ESP to be read, got {other:?}"),
    }
}

#[tokio::test]
async fn gpt_fat16_esp_with_bootx64_is_x64() {
    if !tools_available("gpt_fat16_esp_with_bootx64_is_x64") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let x64 = pe_stub(X64);
    let fat = fat_image(
        dir.path(),
        "x64",
        &Fat {
            bits: 16,
            sectors_per_cluster: 2,
            size_kib: 8192,
            dirs: &["/EFI", "/EFI/BOOT", "/EFI/ubuntu"],
            files: &[
                ("/EFI/ubuntu/grubx64.efi", &x64),
                ("/EFI/BOOT/fbx64.efi", &x64),
                ("/EFI/BOOT/BOOTX64.EFI", &x64),
            ],
        },
    );
    let vhd = disk(dir.path(), "x64.vhd", 12, Table::GptEsp, &fat);
    let (inspection, scan) = scan_disk(&vhd).await;
    assert_eq!(inspection.generation, Some(Generation::V2));
    assert_eq!(checked(&scan), (FatKind::Fat16, vec![Architecture::X64]));
    let LoaderOutcome::Checked {
        partition, loaders, ..
    } = &scan.outcome
    else {
        unreachable!("checked above");
    };
    assert_eq!(*partition, 1);
    assert_eq!(loaders[0].path, r"\EFI\BOOT\BOOTX64.EFI");
    assert_eq!(loaders[0].size as usize, x64.len());
    assert!(
        scan.reads <= 4,
        "boot sector + 3 directory chunks: {scan:?}"
    );
}

#[tokio::test]
async fn gpt_fat16_esp_with_lower_case_bootaa64_is_arm64() {
    if !tools_available("gpt_fat16_esp_with_lower_case_bootaa64_is_arm64") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let aa64 = pe_stub(AA64);
    let fat = fat_image(
        dir.path(),
        "arm",
        &Fat {
            bits: 16,
            sectors_per_cluster: 4,
            size_kib: 16384,
            dirs: &["/efi", "/efi/boot"],
            files: &[("/efi/boot/bootaa64.efi", &aa64)],
        },
    );
    let vhd = disk(dir.path(), "arm.vhd", 20, Table::GptEsp, &fat);
    let (_, scan) = scan_disk(&vhd).await;
    assert_eq!(checked(&scan), (FatKind::Fat16, vec![Architecture::Arm64]));
}

#[tokio::test]
async fn esp_without_a_removable_media_loader_has_none() {
    if !tools_available("esp_without_a_removable_media_loader_has_none") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let x64 = pe_stub(X64);
    for (name, dirs, files) in [
        (
            "no-boot-dir",
            &["/EFI", "/EFI/debian"][..],
            &[("/EFI/debian/grubx64.efi", &x64[..])][..],
        ),
        (
            "empty-boot-dir",
            &["/EFI", "/EFI/BOOT"][..],
            &[("/EFI/BOOT/README.TXT", &b"no loader"[..])][..],
        ),
        ("no-efi-dir", &[][..], &[("/BOOTX64.EFI", &x64[..])][..]),
    ] {
        let fat = fat_image(
            dir.path(),
            name,
            &Fat {
                bits: 16,
                sectors_per_cluster: 2,
                size_kib: 8192,
                dirs,
                files,
            },
        );
        let vhd = disk(dir.path(), &format!("{name}.vhd"), 12, Table::GptEsp, &fat);
        let (_, scan) = scan_disk(&vhd).await;
        assert_eq!(checked(&scan), (FatKind::Fat16, vec![]), "{name}");
    }
}

/// FAT32 with 512-byte clusters and long names everywhere: the root directory and `\EFI\BOOT` span
/// many clusters, so the walk follows FAT chains.
#[tokio::test]
async fn gpt_fat32_esp_with_long_directories_follows_the_fat_chain() {
    if !tools_available("gpt_fat32_esp_with_long_directories_follows_the_fat_chain") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let x64 = pe_stub(X64);
    let aa64 = pe_stub(AA64);
    let names: Vec<String> = (0..40)
        .map(|i| format!("/a rather long file name number {i}.txt"))
        .collect();
    let boot_names: Vec<String> = (0..30)
        .map(|i| format!("/EFI/BOOT/another long name {i}.efi"))
        .collect();
    let mut files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    files.extend(boot_names.iter().map(|n| (n.as_str(), &b"y"[..])));
    files.push(("/EFI/BOOT/BOOTAA64.EFI", &aa64));
    files.push(("/EFI/BOOT/BOOTX64.EFI", &x64));
    // EFI is made after the 40 root files so it sits late in the root's chain.
    let (before, after) = files.split_at(40);
    let fat_path = {
        let spec = Fat {
            bits: 32,
            sectors_per_cluster: 1,
            size_kib: 34816,
            dirs: &[],
            files: before,
        };
        let img = fat_image(dir.path(), "fat32", &spec);
        fat_image_more(dir.path(), &img, &["/EFI", "/EFI/BOOT"], after)
    };
    let vhd = disk(dir.path(), "fat32.vhd", 40, Table::GptEsp, &fat_path);
    let (_, scan) = scan_disk(&vhd).await;
    assert_eq!(
        checked(&scan),
        (FatKind::Fat32, vec![Architecture::X64, Architecture::Arm64])
    );
    assert!(
        scan.reads > 6,
        "512-byte clusters mean several cluster and FAT reads: {scan:?}"
    );
}

/// Adds directories and files to an existing image with mtools.
fn fat_image_more(
    dir: &Path,
    img: &Path,
    dirs: &[&str],
    files: &[(&str, &[u8])],
) -> std::path::PathBuf {
    let i = img.to_str().expect("UTF-8");
    for d in dirs {
        mtool("mmd", &["-i", i, &format!("::{d}")]);
    }
    for (n, (path, bytes)) in files.iter().enumerate() {
        let src = dir.join(format!("more{n}"));
        std::fs::write(&src, bytes).expect("write");
        mtool(
            "mcopy",
            &["-i", i, src.to_str().expect("UTF-8"), &format!("::{path}")],
        );
    }
    img.to_path_buf()
}

fn mtool(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn fat12_esp_with_x64_and_ia32_loaders() {
    if !tools_available("fat12_esp_with_x64_and_ia32_loaders") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let x64 = pe_stub(X64);
    let ia32 = pe_stub(0x14C);
    let fat = fat_image(
        dir.path(),
        "fat12",
        &Fat {
            bits: 12,
            sectors_per_cluster: 1,
            size_kib: 1024,
            dirs: &["/EFI", "/EFI/BOOT"],
            files: &[
                ("/EFI/BOOT/BOOTIA32.EFI", &ia32),
                ("/EFI/BOOT/BOOTX64.EFI", &x64),
            ],
        },
    );
    let vhd = disk(dir.path(), "fat12.vhd", 4, Table::GptEsp, &fat);
    let (_, scan) = scan_disk(&vhd).await;
    assert_eq!(
        checked(&scan),
        (FatKind::Fat12, vec![Architecture::X64, Architecture::X86])
    );
}

#[tokio::test]
async fn mbr_disks_generation_1_has_no_esp_and_an_0xef_partition_is_read() {
    if !tools_available("mbr_disks_generation_1_has_no_esp_and_an_0xef_partition_is_read") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let aa64 = pe_stub(AA64);
    let spec = Fat {
        bits: 16,
        sectors_per_cluster: 2,
        size_kib: 8192,
        dirs: &["/EFI", "/EFI/BOOT"],
        files: &[("/EFI/BOOT/BOOTAA64.EFI", &aa64)],
    };
    let fat = fat_image(dir.path(), "mbr", &spec);

    let v1 = disk(dir.path(), "v1.vhd", 12, Table::MbrActiveLinux, &fat);
    let (inspection, scan) = scan_disk(&v1).await;
    assert_eq!(inspection.generation, Some(Generation::V1));
    assert_eq!(scan.outcome, LoaderOutcome::Unchecked(Unchecked::NoEsp));
    assert_eq!((scan.reads, scan.bytes_read), (0, 0));

    let ef = disk(dir.path(), "mbr-ef.vhd", 12, Table::MbrEsp, &fat);
    let (_, scan) = scan_disk(&ef).await;
    assert_eq!(checked(&scan), (FatKind::Fat16, vec![Architecture::Arm64]));
}

#[tokio::test]
async fn unreadable_esps_are_unchecked_not_errors() {
    if !tools_available("unreadable_esps_are_unchecked_not_errors") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");

    // An ESP that was never formatted.
    let zeros = dir.path().join("zeros.fat");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).expect("write");
    let vhd = disk(dir.path(), "zeros.vhd", 8, Table::GptEsp, &zeros);
    let (_, scan) = scan_disk(&vhd).await;
    assert!(
        matches!(&scan.outcome, LoaderOutcome::Unchecked(Unchecked::NotFat { partition: 1, why }) if why.contains("signature")),
        "{scan:?}"
    );
    assert_eq!(scan.reads, 1);

    // A FAT16 root directory of 8,192 entries (256 KiB), all in use and none of them EFI: reading
    // it all would pass the cap, so the check stops there.
    let fat = fat_image(
        dir.path(),
        "bigroot",
        &Fat {
            bits: 16,
            sectors_per_cluster: 4,
            size_kib: 16384,
            dirs: &[],
            files: &[],
        },
    );
    let mut image = std::fs::read(&fat).expect("read");
    let le16 = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let (reserved, fats, fat_sectors) = (le16(14), image[16] as usize, le16(22));
    assert_eq!(le16(17), 512, "mkfs.vfat's default root size");
    // Grow the root to 8,192 entries by claiming the data area behind it (nothing is stored there).
    image[17..19].copy_from_slice(&8192u16.to_le_bytes());
    let root = (reserved + fats * fat_sectors) * 512;
    for slot in image[root..root + 8192 * 32].chunks_exact_mut(32) {
        slot.copy_from_slice(b"FILLER  TXT\x20\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    }
    std::fs::write(&fat, &image).expect("write");
    let vhd = disk(dir.path(), "bigroot.vhd", 20, Table::GptEsp, &fat);
    let (_, scan) = scan_disk(&vhd).await;
    assert_eq!(
        scan.outcome,
        LoaderOutcome::Unchecked(Unchecked::CapReached { cap: ESP_READ_CAP })
    );
}

/// The whole preflight on real disks: an Arm64 disk declared x64 is rejected with both facts, the
/// same disk declared Arm64 with Trusted Launch passes; a generation 1 disk cannot be Trusted
/// Launch; data disks that are dynamic or carry an OS layout are rejected, a blank fixed one passes.
#[tokio::test]
async fn preflight_on_real_disks() {
    use vhd::{ProblemCode, SecurityType, check_architecture, check_generation, inspect_data_disk};
    if !tools_available("preflight_on_real_disks") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let aa64 = pe_stub(AA64);
    let fat = fat_image(
        dir.path(),
        "arm",
        &Fat {
            bits: 16,
            sectors_per_cluster: 2,
            size_kib: 8192,
            dirs: &["/EFI", "/EFI/BOOT"],
            files: &[("/EFI/BOOT/BOOTAA64.EFI", &aa64)],
        },
    );
    let arm = disk(dir.path(), "arm.vhd", 12, Table::GptEsp, &fat);
    let (os, scan) = scan_disk(&arm).await;
    let p = check_architecture(Architecture::X64, &scan.outcome, "uploads/arm.vhd")
        .expect_err("an Arm64 loader declared x64");
    eprintln!("{p}");
    assert_eq!(p.code, ProblemCode::ArchitectureMismatch);
    assert!(p.message.contains("x64") && p.message.contains(r"\EFI\BOOT\BOOTAA64.EFI"));
    assert!(p.fix.contains("declare architecture Arm64"), "{p}");
    let note = check_architecture(Architecture::Arm64, &scan.outcome, "uploads/arm.vhd")
        .expect("Arm64 as declared");
    assert!(note.contains("confirmed"), "{note}");
    check_generation(&os, Some(SecurityType::TrustedLaunch), Architecture::Arm64)
        .expect("GPT with an ESP is generation 2");

    let v1 = disk(dir.path(), "v1.vhd", 12, Table::MbrActiveLinux, &fat);
    let (os, scan) = scan_disk(&v1).await;
    let p = check_generation(&os, Some(SecurityType::TrustedLaunch), Architecture::X64)
        .expect_err("Trusted Launch on a generation 1 disk");
    assert_eq!(p.code, ProblemCode::FeatureNeedsGenerationV2);
    let note = check_architecture(Architecture::X64, &scan.outcome, "uploads/v1.vhd")
        .expect("no ESP: accepted as declared");
    assert!(note.contains("could not check"), "{note}");

    let data = |path: std::path::PathBuf, lun: u32| async move {
        let file = FileReader::open(&path).expect("open");
        let len = file.len();
        inspect_data_disk(&file, len, &Expectations::new("uploads/data.vhd"), lun).await
    };
    let p = data(arm.clone(), 1)
        .await
        .expect_err("an OS disk as data disk");
    assert_eq!(
        p.problem().map(|p| p.code),
        Some(ProblemCode::DataDiskHasOsLayout)
    );

    let dynamic = dir.path().join("dynamic.vhd");
    let fixed = dir.path().join("blank.vhd");
    for (path, opts) in [
        (&dynamic, "subformat=dynamic"),
        (&fixed, "subformat=fixed,force_size"),
    ] {
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "vpc", "-o", opts])
            .arg(path)
            .arg("16M")
            .output()
            .expect("qemu-img");
        assert!(out.status.success());
    }
    let err = data(dynamic, 3).await.expect_err("a dynamic data disk");
    let p = err.problem().expect("a rejection");
    assert_eq!(p.code, ProblemCode::VhdIsDynamic);
    assert!(p.message.starts_with("Data disk LUN 3: "), "{p}");
    assert!(p.fix.contains("subformat=fixed"), "{p}");
    let blank = data(fixed, 0).await.expect("a blank fixed data disk");
    assert_eq!(blank.virtual_size, 16 << 20);
}

/// A disk in memory with some bytes overwritten, read without copying the whole disk.
struct Damaged<'a> {
    disk: &'a [u8],
    patches: Vec<(u64, u8)>,
}

impl vhd::RangeRead for Damaged<'_> {
    type Error = std::io::Error;
    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl std::future::Future<Output = Result<bytes::Bytes, Self::Error>> + Send {
        let start = (offset as usize).min(self.disk.len());
        let end = (offset.saturating_add(len) as usize).min(self.disk.len());
        let mut out = self.disk[start..end].to_vec();
        for &(at, b) in &self.patches {
            if at >= offset && at < offset + out.len() as u64 {
                out[(at - offset) as usize] = b;
            }
        }
        std::future::ready(Ok(out.into()))
    }
}

/// Damaged ESPs never panic and never read past the cap: real FAT12, FAT16 and FAT32 disks with
/// bytes overwritten where the walk reads (boot sector, FAT, directories), thousands of times.
#[tokio::test]
async fn damaged_esps_never_panic_nor_pass_the_cap() {
    use vhd::partition;
    if !tools_available("damaged_esps_never_panic_nor_pass_the_cap") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let x64 = pe_stub(X64);
    let names: Vec<String> = (0..20)
        .map(|i| format!("/EFI/BOOT/long name {i}.efi"))
        .collect();
    let mut files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    files.push(("/EFI/BOOT/BOOTX64.EFI", &x64));
    let mut disks = Vec::new();
    for (name, bits, spc, kib, mib) in [
        ("m12", 12, 1, 1024, 4),
        ("m16", 16, 2, 8192, 12),
        ("m32", 32, 1, 34816, 40),
    ] {
        disks.push(boot_disk(
            dir.path(),
            name,
            (bits, spc, kib),
            mib,
            Table::GptEsp,
            &files,
        ));
    }
    // A small xorshift generator: the same damage on every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for image in &disks {
        let virtual_size = image.len() as u64 - 512;
        let scheme = partition::parse(&image[..64 * 1024], None).expect("a GPT");
        // Where the walk reads on the intact disk: the damage goes there.
        let intact = CountingReader::new(Damaged {
            disk: image,
            patches: vec![],
        });
        find_boot_loaders(&intact, &scheme, virtual_size)
            .await
            .expect("reads");
        let ranges = intact.ranges();
        for _ in 0..2000 {
            let patches = (0..1 + next() % 6)
                .map(|_| {
                    let (offset, len) = ranges[(next() % ranges.len() as u64) as usize];
                    // The boot sector's BPB is the first 64 bytes: hit it often.
                    let at = if next() % 4 == 0 {
                        offset + next() % 64.min(len)
                    } else {
                        offset + next() % len
                    };
                    (at, (next() & 0xFF) as u8)
                })
                .collect();
            let reader = Damaged {
                disk: image,
                patches,
            };
            let scan = find_boot_loaders(&reader, &scheme, virtual_size)
                .await
                .expect("in-memory reads do not fail");
            assert!(scan.bytes_read <= ESP_READ_CAP, "{scan:?}");
            let key = match &scan.outcome {
                LoaderOutcome::Checked { loaders, .. } => {
                    format!("checked, {} loader(s)", loaders.len())
                }
                LoaderOutcome::Unchecked(u) => format!("{u:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            *outcomes.entry(key).or_default() += 1;
        }
    }
    eprintln!("{outcomes:#?}");
    for kind in [
        "checked, 1 loader(s)",
        "checked, 0 loader(s)",
        "NotFat",
        "Damaged",
    ] {
        assert!(
            outcomes.contains_key(kind),
            "the damage never gave {kind}: {outcomes:?}"
        );
    }
}

/// The one-call OS disk preflight: the architecture is declared, detected from the one loader, or
/// x64 by default, and every rule applies.
#[tokio::test]
async fn inspect_os_disk_declares_detects_or_defaults_the_architecture() {
    use vhd::{ArchitectureSource, ProblemCode, SecurityType, inspect_os_disk};
    if !tools_available("inspect_os_disk_declares_detects_or_defaults_the_architecture") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let aa64 = pe_stub(AA64);
    let fat = fat_image(
        dir.path(),
        "arm",
        &Fat {
            bits: 16,
            sectors_per_cluster: 2,
            size_kib: 8192,
            dirs: &["/EFI", "/EFI/BOOT"],
            files: &[("/EFI/BOOT/BOOTAA64.EFI", &aa64)],
        },
    );
    let arm = disk(dir.path(), "arm.vhd", 12, Table::GptEsp, &fat);
    let v1 = disk(dir.path(), "v1.vhd", 12, Table::MbrActiveLinux, &fat);
    let run = |path: std::path::PathBuf, tl: bool, declared: Option<Architecture>| async move {
        let len = FileReader::open(&path).expect("open").len();
        let reader = CountingReader::new(FileReader::open(&path).expect("open"));
        let security = tl.then_some(SecurityType::TrustedLaunch);
        let result = inspect_os_disk(
            &reader,
            len,
            &Expectations::new("uploads/os.vhd"),
            security,
            declared,
        )
        .await;
        (result, reader.reads(), reader.bytes_read())
    };

    let (r, reads, bytes) = run(arm.clone(), true, None).await;
    let os = r.expect("an Arm64 Trusted Launch disk");
    assert_eq!(
        (os.architecture, os.architecture_source),
        (Architecture::Arm64, ArchitectureSource::Detected)
    );
    assert!(
        os.inspection
            .notes
            .iter()
            .any(|n| n.contains("Arm64 detected")),
        "{:?}",
        os.inspection.notes
    );
    assert!(
        reads <= 7 && bytes <= 64 * 1024 + 512 + 12_800,
        "{reads} reads, {bytes} bytes"
    );

    let (r, _, _) = run(arm.clone(), false, Some(Architecture::X64)).await;
    let err = r.expect_err("an Arm64 loader declared x64");
    assert_eq!(
        err.problem().map(|p| p.code),
        Some(ProblemCode::ArchitectureMismatch)
    );

    let (r, _, _) = run(v1.clone(), false, Some(Architecture::Arm64)).await;
    let err = r.expect_err("Arm64 on a generation 1 disk");
    assert_eq!(
        err.problem().map(|p| p.code),
        Some(ProblemCode::FeatureNeedsGenerationV2)
    );

    let (r, _, _) = run(v1, false, None).await;
    let os = r.expect("a generation 1 x64 disk");
    assert_eq!(
        (os.architecture, os.architecture_source),
        (Architecture::X64, ArchitectureSource::Default)
    );
    assert!(
        os.inspection
            .notes
            .iter()
            .any(|n| n.contains("Azure's default x64") && n.contains("could not check")),
        "{:?}",
        os.inspection.notes
    );
}
