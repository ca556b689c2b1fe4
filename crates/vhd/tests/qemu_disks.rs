//! Inspection of real disks made by `qemu-img` in a temp dir: the good ones are accepted reading only
//! the footer and the first 64 KiB, every bad one is rejected with its own code and fix.
//! `qemu-img` must be installed (CI installs it); without it these tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use vhd::partition::write::{Part, gpt, mbr};
use vhd::partition::{BIOS_BOOT_GUID, ESP_GUID};
use vhd::{
    CountingReader, Expectations, FileReader, Generation, GenerationSource, HEAD_LEN, InspectError,
    Inspection, PartitionScheme, ProblemCode, inspect,
};

const MIB: u64 = 1 << 20;
const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap_or_else(|e| {
        panic!("qemu-img is required for these tests (apt-get install qemu-utils): cannot run it: {e}")
    });
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `qemu-img create -f <format> [-o <opts>] <name> <size>` in `dir`.
fn create(dir: &Path, name: &str, format: &str, opts: Option<&str>, size: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["create", "-q", "-f", format];
    if let Some(o) = opts {
        args.extend(["-o", o]);
    }
    args.extend([path_str(&path), size]);
    qemu_img(&args);
    path
}

/// Writes a raw disk with the given partition table, then converts it with
/// `qemu-img convert -f raw -O vpc -o subformat=fixed,force_size`.
fn partitioned_vhd(dir: &Path, name: &str, size: u64, table: impl FnOnce(&mut [u8])) -> PathBuf {
    let mut raw = vec![0u8; size as usize];
    table(&mut raw);
    let raw_path = dir.join(format!("{name}.raw"));
    std::fs::write(&raw_path, &raw).expect("write raw image");
    let vhd_path = dir.join(name);
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=fixed,force_size",
        path_str(&raw_path),
        path_str(&vhd_path),
    ]);
    vhd_path
}

/// Runs the first `command` quoted in a fix, as the uploader would (`sh -c` in the folder holding
/// the file), and inspects the `<stem>-fixed.vhd` it makes.
async fn follow_fix(p: &vhd::Problem, dir: &Path, output: &str) -> Outcome {
    let command = p
        .fix
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in the fix: {p}"));
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
    assert!(
        out.status.success(),
        "the fix `{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixed = dir.join(output);
    inspect_file(&fixed, &expect_named(&fixed)).await
}

struct Outcome {
    result: Result<Inspection, InspectError<std::io::Error>>,
    reads: usize,
    bytes_read: u64,
}

async fn inspect_file(path: &Path, expect: &Expectations) -> Outcome {
    let file = FileReader::open(path).expect("open test disk");
    let len = file.len();
    let reader = CountingReader::new(file);
    let result = inspect(&reader, len, expect).await;
    Outcome {
        result,
        reads: reader.reads(),
        bytes_read: reader.bytes_read(),
    }
}

fn expect_named(path: &Path) -> Expectations {
    Expectations::new(format!(
        "uploads/{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("disk.vhd")
    ))
}

fn rejected(o: &Outcome, code: ProblemCode) -> &vhd::Problem {
    match &o.result {
        Err(InspectError::Rejected(p)) => {
            eprintln!("{p}\n");
            assert_eq!(p.code, code, "wrong rejection: {p}");
            assert!(!p.message.is_empty() && !p.fix.is_empty(), "{p}");
            p
        }
        other => panic!("expected rejection {code}, got {other:?}"),
    }
}

fn accepted(o: &Outcome) -> &Inspection {
    match &o.result {
        Ok(i) => i,
        Err(e) => panic!("expected acceptance, got {e}"),
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[tokio::test]
async fn fixed_vhds_made_with_force_size_are_accepted_from_two_small_reads() {
    let dir = tmp();
    for (size, mib) in [("8M", 8u64), ("16M", 16)] {
        let path = create(
            dir.path(),
            &format!("fixed-{size}.vhd"),
            "vpc",
            Some("subformat=fixed,force_size"),
            size,
        );
        let o = inspect_file(&path, &expect_named(&path)).await;
        let i = accepted(&o);
        assert_eq!(i.virtual_size, mib * MIB);
        assert_eq!(i.blob_len, mib * MIB + 512);
        assert_eq!(i.footer.creator_application, "qem2");
        assert_eq!(i.footer.disk_type, vhd::DiskType::Fixed);
        assert_eq!(i.partition_scheme, PartitionScheme::None);
        assert_eq!(i.generation, None);
        assert_eq!(i.generation_source, GenerationSource::Unknown);
        assert_eq!(o.reads, 2, "footer and head only");
        assert_eq!(o.bytes_read, HEAD_LEN + 512);
    }
}

#[tokio::test]
async fn fixed_vhd_without_force_size_is_unaligned_and_rejected_with_the_resize_recipe() {
    let dir = tmp();
    let path = create(
        dir.path(),
        "noforce.vhd",
        "vpc",
        Some("subformat=fixed"),
        "100M",
    );
    let file_len = std::fs::metadata(&path).expect("stat").len();
    let virtual_size = file_len - 512;
    assert_ne!(
        virtual_size % MIB,
        0,
        "qemu-img rounded 100M to CHS: {virtual_size} should be unaligned"
    );
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdSizeNotAligned);
    let aligned = virtual_size.div_ceil(MIB) * MIB;
    assert!(
        p.message.contains(&vhd::problem::thousands(virtual_size)),
        "{p}"
    );
    assert!(p.message.contains("creator is `qemu`"), "{p}");
    assert!(
        p.fix.contains(&format!(
            "qemu-img convert -f vpc -O raw noforce.vhd noforce.raw && qemu-img resize -f raw noforce.raw {aligned} && qemu-img convert -f raw -O vpc -o subformat=fixed,force_size noforce.raw noforce-fixed.vhd"
        )),
        "{p}"
    );
    assert_eq!(o.reads, 2);

    // The recipe works: following it gives a disk that is accepted.
    let o = follow_fix(p, dir.path(), "noforce-fixed.vhd").await;
    assert_eq!(accepted(&o).virtual_size, aligned);
}

#[tokio::test]
async fn dynamic_vhd_is_named_and_the_conversion_command_fixes_it() {
    let dir = tmp();
    let path = create(
        dir.path(),
        "sparse.vhd",
        "vpc",
        Some("subformat=dynamic,force_size"),
        "8M",
    );
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdIsDynamic);
    let command =
        "qemu-img convert -f vpc -O vpc -o subformat=fixed,force_size sparse.vhd sparse-fixed.vhd";
    assert!(p.fix.contains(command), "{p}");
    assert!(p.message.contains("8,388,608 bytes (8 MiB)"), "{p}");

    let o = follow_fix(p, dir.path(), "sparse-fixed.vhd").await;
    assert_eq!(accepted(&o).virtual_size, 8 * MIB);
}

#[tokio::test]
async fn dynamic_vhd_without_force_size_gets_the_resize_recipe() {
    let dir = tmp();
    let path = create(
        dir.path(),
        "sparse-chs.vhd",
        "vpc",
        Some("subformat=dynamic"),
        "100M",
    );
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdIsDynamic);
    assert!(
        p.fix
            .contains("qemu-img resize -f raw sparse-chs.raw 105906176"),
        "{p}"
    );
    let o = follow_fix(p, dir.path(), "sparse-chs-fixed.vhd").await;
    assert_eq!(accepted(&o).virtual_size, 101 * MIB);
}

#[tokio::test]
async fn vhdx_is_named_as_such() {
    let dir = tmp();
    let path = create(dir.path(), "hyperv.vhdx", "vhdx", None, "8M");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdxNotSupported);
    assert!(p.message.contains("VHDX"), "{p}");
    assert!(
        p.fix.contains("qemu-img convert -f vhdx -O vpc -o subformat=fixed,force_size hyperv.vhdx hyperv-fixed.vhd"),
        "{p}"
    );
    assert!(p.fix.contains("Convert-VHD"), "{p}");
    let o = follow_fix(p, dir.path(), "hyperv-fixed.vhd").await;
    assert_eq!(accepted(&o).virtual_size, 8 * MIB);
}

#[tokio::test]
async fn qcow2_named_vhd_is_not_a_vhd_and_says_what_it_is() {
    let dir = tmp();
    let path = create(dir.path(), "image.qcow2", "qcow2", None, "8M");
    let renamed = dir.path().join("image.vhd");
    std::fs::rename(&path, &renamed).expect("rename");
    let o = inspect_file(&renamed, &expect_named(&renamed)).await;
    let p = rejected(&o, ProblemCode::NotAVhd);
    assert!(p.message.contains("QCOW2"), "{p}");
    assert!(p.fix.contains("qemu-img convert -f qcow2 -O vpc"), "{p}");
    let o = follow_fix(p, dir.path(), "image-fixed.vhd").await;
    assert_eq!(accepted(&o).virtual_size, 8 * MIB);
}

#[tokio::test]
async fn truncated_uploads_are_rejected() {
    let dir = tmp();
    let path = create(
        dir.path(),
        "cut.vhd",
        "vpc",
        Some("subformat=fixed,force_size"),
        "8M",
    );
    let full = std::fs::read(&path).expect("read");

    // Cut inside the footer: the cookie is still there, so the numbers are exact.
    std::fs::write(&path, &full[..full.len() - 100]).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdTruncated);
    assert!(
        p.message
            .contains("only 412 of its 512 bytes are there (100 missing)"),
        "{p}"
    );
    assert!(p.message.contains("8,389,120"), "{p}");
    assert!(p.fix.contains("the blob ends before the footer"), "{p}");

    // Cut mid-sector, footer gone entirely.
    std::fs::write(&path, &full[..4 * MIB as usize + 7]).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdTruncated);
    assert!(
        p.message.contains("not a whole number of 512-byte sectors"),
        "{p}"
    );

    // Cut at a sector boundary: no footer, zeros where it belongs (also what an unfinished
    // page-blob upload looks like).
    std::fs::write(&path, &full[..4 * MIB as usize]).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdFooterMissing);
    assert!(
        p.message.contains("zeros where the VHD footer belongs"),
        "{p}"
    );
}

#[tokio::test]
async fn truncated_partitioned_disk_is_recognised_as_a_disk_without_footer() {
    let dir = tmp();
    let path = partitioned_vhd(dir.path(), "gen2.vhd", 16 * MIB, |d| {
        gpt(
            d,
            &[Part {
                type_guid: ESP_GUID,
                first_lba: 2048,
                last_lba: 4095,
                name: "EFI",
            }],
        )
    });
    let full = std::fs::read(&path).expect("read");
    std::fs::write(&path, &full[..8 * MIB as usize]).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdFooterMissing);
    assert!(
        p.message.contains("It starts with GPT with 1 partition(s)"),
        "{p}"
    );
}

#[tokio::test]
async fn corrupted_footer_checksum_is_rejected() {
    let dir = tmp();
    let path = create(
        dir.path(),
        "flip.vhd",
        "vpc",
        Some("subformat=fixed,force_size"),
        "8M",
    );
    let mut bytes = std::fs::read(&path).expect("read");
    let footer_at = bytes.len() - 512;
    bytes[footer_at + 85] ^= 0x40; // reserved area: only the checksum can notice
    std::fs::write(&path, &bytes).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdFooterChecksum);
    assert!(p.message.contains("checksum is 0x"), "{p}");
}

#[tokio::test]
async fn zero_byte_blob_is_rejected_without_reading() {
    let dir = tmp();
    let path = dir.path().join("empty.vhd");
    std::fs::write(&path, b"").expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    rejected(&o, ProblemCode::BlobEmpty);
    assert_eq!(o.reads, 0);
}

#[tokio::test]
async fn text_file_named_vhd_is_not_a_vhd() {
    let dir = tmp();
    let path = dir.path().join("notes.vhd");
    std::fs::write(&path, "This is where the VHD would go.\n".repeat(100)).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::NotAVhd);
    assert!(p.message.contains("text file"), "{p}");
    assert_eq!(o.reads, 1, "a blob under 64 KiB is read once");
}

fn gpt_esp(d: &mut [u8]) {
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
                last_lba: 30_000,
                name: "root",
            },
        ],
    )
}

#[tokio::test]
async fn declared_gen1_on_a_gpt_efi_disk_is_a_generation_mismatch() {
    let dir = tmp();
    let path = partitioned_vhd(dir.path(), "uefi.vhd", 16 * MIB, gpt_esp);
    let mut expect = expect_named(&path);

    expect.declared_generation = Some(Generation::V1);
    let o = inspect_file(&path, &expect).await;
    let p = rejected(&o, ProblemCode::GenerationMismatch);
    assert!(p.message.contains("declares hyperVGeneration V1"), "{p}");
    assert!(p.message.contains("EFI System Partition"), "{p}");
    assert!(
        p.fix
            .contains("Declare hyperVGeneration V2 in the manifest"),
        "{p}"
    );
    assert_eq!(
        o.reads, 2,
        "GPT entries at LBA 2 are inside the first 64 KiB"
    );

    expect.allow_generation_mismatch = true;
    let o = inspect_file(&path, &expect).await;
    let i = accepted(&o);
    assert_eq!(i.generation, Some(Generation::V1));
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("allowGenerationMismatch")),
        "{:?}",
        i.notes
    );

    expect.allow_generation_mismatch = false;
    expect.declared_generation = Some(Generation::V2);
    let o = inspect_file(&path, &expect).await;
    assert_eq!(accepted(&o).generation_source, GenerationSource::Declared);

    expect.declared_generation = None;
    let o = inspect_file(&path, &expect).await;
    let i = accepted(&o);
    assert_eq!(
        (i.generation, i.generation_source),
        (Some(Generation::V2), GenerationSource::Detected)
    );
    match &i.partition_scheme {
        PartitionScheme::Gpt {
            has_esp: true,
            partitions,
            ..
        } => {
            assert_eq!(partitions[0].name, "EFI system partition");
            assert_eq!(partitions[1].type_guid, LINUX_FS);
        }
        other => panic!("expected GPT with ESP, got {other:?}"),
    }
}

#[tokio::test]
async fn hybrid_gpt_with_bios_boot_accepts_either_generation() {
    let dir = tmp();
    let path = partitioned_vhd(dir.path(), "hybrid.vhd", 16 * MIB, |d| {
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
    });
    for g in [Generation::V1, Generation::V2] {
        let mut expect = expect_named(&path);
        expect.declared_generation = Some(g);
        let o = inspect_file(&path, &expect).await;
        assert_eq!(accepted(&o).generation, Some(g));
    }
    let o = inspect_file(&path, &expect_named(&path)).await;
    assert_eq!(accepted(&o).generation_source, GenerationSource::Unknown);
}

#[tokio::test]
async fn declared_gen2_on_an_mbr_disk_is_a_generation_mismatch() {
    let dir = tmp();
    let path = partitioned_vhd(dir.path(), "bios.vhd", 16 * MIB, |d| {
        mbr(d, &[(true, 0x83, 2048, 30_000)])
    });
    let mut expect = expect_named(&path);
    expect.declared_generation = Some(Generation::V2);
    let o = inspect_file(&path, &expect).await;
    let p = rejected(&o, ProblemCode::GenerationMismatch);
    assert!(
        p.message
            .contains("MBR with 1 partition(s), one marked active"),
        "{p}"
    );
    assert!(p.fix.contains("Declare hyperVGeneration V1"), "{p}");

    let o = inspect_file(&path, &expect_named(&path)).await;
    let i = accepted(&o);
    assert_eq!(
        (i.generation, i.generation_source),
        (Some(Generation::V1), GenerationSource::Detected)
    );
}

#[tokio::test]
async fn damaged_gpt_is_rejected_unless_overridden() {
    let dir = tmp();
    let path = partitioned_vhd(dir.path(), "badgpt.vhd", 16 * MIB, gpt_esp);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[1024 + 40] ^= 0xff; // first entry's last LBA: the entries' CRC no longer matches
    std::fs::write(&path, &bytes).expect("write");
    let mut expect = expect_named(&path);
    let o = inspect_file(&path, &expect).await;
    let p = rejected(&o, ProblemCode::PartitionTableInvalid);
    assert!(p.message.contains("partition entries' CRC32"), "{p}");

    expect.allow_generation_mismatch = true;
    let o = inspect_file(&path, &expect).await;
    let i = accepted(&o);
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("Partition table not checked")),
        "{:?}",
        i.notes
    );
}

#[tokio::test]
async fn gpt_entries_beyond_the_first_64_kib_cost_one_more_read() {
    let dir = tmp();
    let entries_lba = 1024u64; // byte 512 KiB
    let path = partitioned_vhd(dir.path(), "far.vhd", 16 * MIB, |d| {
        gpt_esp(d);
        let entries = d[1024..1024 + 16384].to_vec();
        d[1024..1024 + 16384].fill(0);
        let at = (entries_lba * 512) as usize;
        d[at..at + 16384].copy_from_slice(&entries);
        d[512 + 72..512 + 80].copy_from_slice(&entries_lba.to_le_bytes());
        d[512 + 16..512 + 20].fill(0);
        let crc = crc32(&d[512..604]);
        d[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
    });
    let mut expect = expect_named(&path);
    expect.declared_generation = Some(Generation::V1);
    let file = FileReader::open(&path).expect("open");
    let len = file.len();
    let reader = CountingReader::new(file);
    let err = inspect(&reader, len, &expect).await.expect_err("mismatch");
    assert_eq!(
        err.problem().map(|p| p.code),
        Some(ProblemCode::GenerationMismatch),
        "{err}"
    );
    assert_eq!(
        reader.ranges(),
        vec![(len - 512, 512), (0, HEAD_LEN), (entries_lba * 512, 16384)]
    );
}

/// CRC-32 (IEEE), bitwise, written here so the test does not trust the crate's own dependency.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn the_test_crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

/// The partition tables the tests write are checked by an independent reader (util-linux `partx`,
/// libblkid), so the GPT/MBR parsing is not only tested against this crate's own writer.
#[test]
fn partx_reads_the_tables_the_tests_write() {
    let dir = tmp();
    let raw = dir.path().join("gpt.raw");
    let mut disk = vec![0u8; 16 * MIB as usize];
    gpt_esp(&mut disk);
    std::fs::write(&raw, &disk).expect("write");
    let show = |path: &Path| {
        let out = Command::new("partx")
            .args([
                "--raw",
                "--noheadings",
                "--output",
                "NR,START,END,TYPE,NAME",
            ])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("partx (util-linux) is required for this test: {e}"));
        assert!(
            out.status.success(),
            "partx failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    let listing = show(&raw);
    assert!(
        listing.contains(&format!("1 2048 4095 {}", ESP_GUID.to_lowercase())),
        "partx sees no ESP at 2048..4095:\n{listing}"
    );
    assert!(
        listing.contains(&format!("2 4096 30000 {}", LINUX_FS.to_lowercase())),
        "{listing}"
    );

    let raw = dir.path().join("mbr.raw");
    let mut disk = vec![0u8; 16 * MIB as usize];
    mbr(&mut disk, &[(true, 0x83, 2048, 30_000)]);
    std::fs::write(&raw, &disk).expect("write");
    let listing = show(&raw);
    assert!(listing.contains("1 2048 32047 0x83"), "{listing}");
}

#[tokio::test]
async fn raw_image_named_vhd_gets_the_conversion_that_works() {
    let dir = tmp();
    let path = dir.path().join("rawdisk.vhd");
    let mut disk = vec![0u8; 16 * MIB as usize + 4096];
    mbr(&mut disk, &[(true, 0x83, 2048, 30_000)]);
    std::fs::write(&path, &disk).expect("write");
    let o = inspect_file(&path, &expect_named(&path)).await;
    let p = rejected(&o, ProblemCode::VhdFooterMissing);
    assert!(
        p.message.contains("It starts with MBR with 1 partition(s)"),
        "{p}"
    );
    let recipe = "qemu-img resize -f raw rawdisk.vhd 17825792 && qemu-img convert -f raw -O vpc -o subformat=fixed,force_size rawdisk.vhd rawdisk-fixed.vhd";
    assert!(p.fix.contains(recipe), "{p}");

    let o = follow_fix(p, dir.path(), "rawdisk-fixed.vhd").await;
    let i = accepted(&o);
    assert_eq!(i.virtual_size, 17 * MIB);
    assert_eq!(i.generation, Some(Generation::V1));
}

#[test]
fn inspect_futures_are_send_so_handlers_can_spawn_them() {
    fn assert_send<T: Send>(_: &T) {}
    let reader = CountingReader::new(vhd::BytesReader(bytes::Bytes::new()));
    let expect = Expectations::new("x.vhd");
    let fut = inspect(&reader, 0, &expect);
    assert_send(&fut);
    drop(fut);
}
