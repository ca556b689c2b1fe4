//! What the architecture check costs, printed: range reads and bytes that [`vhd::find_boot_loaders`]
//! takes on real disks (FAT12/16/32 ESPs made by mkfs.vfat and mtools, GPT and MBR, as in
//! tests/esp_disks.rs), against the cap [`vhd::ESP_READ_CAP`], and the local time per check.
//! Run: `cargo bench -p vhd --bench esp` (needs qemu-img, mkfs.vfat and mtools).

#[path = "../tests/common/disks.rs"]
mod disks;

use std::path::PathBuf;
use std::time::Instant;

use disks::{Fat, Table, disk, fat_image, pe_stub, tools_available};
use vhd::{CountingReader, ESP_READ_CAP, Expectations, FileReader, find_boot_loaders, inspect};

/// Assumed latency of one HTTP range read of a blob, for the "at 20 ms/read" column.
const READ_MS: u64 = 20;

fn main() {
    if !tools_available("bench esp") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let x64 = pe_stub(0x8664);
    let aa64 = pe_stub(0xAA64);
    let many: Vec<String> = (0..40)
        .map(|i| format!("/EFI/BOOT/a long file name {i}.efi"))
        .collect();
    let mut crowded: Vec<(&str, &[u8])> = many.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    crowded.push(("/EFI/BOOT/BOOTX64.EFI", &x64));
    let ubuntu_like: &[(&str, &[u8])] = &[
        ("/EFI/BOOT/BOOTX64.EFI", &x64),
        ("/EFI/BOOT/fbx64.efi", &x64),
        ("/EFI/BOOT/mmx64.efi", &x64),
        ("/EFI/ubuntu/shimx64.efi", &x64),
        ("/EFI/ubuntu/grubx64.efi", &x64),
        ("/EFI/ubuntu/grub.cfg", b"search.fs_uuid"),
    ];
    let ubuntu_dirs: &[&str] = &["/EFI", "/EFI/BOOT", "/EFI/ubuntu"];
    let boot: &[&str] = &["/EFI", "/EFI/BOOT"];
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "GPT, FAT12 1 MiB, BOOTX64",
            esp(
                d,
                "fat12",
                12,
                1,
                1024,
                boot,
                &[("/EFI/BOOT/BOOTX64.EFI", &x64)],
                4,
                Table::GptEsp,
            ),
        ),
        (
            "GPT, FAT16 8 MiB, Ubuntu-like",
            esp(
                d,
                "fat16",
                16,
                2,
                8192,
                ubuntu_dirs,
                ubuntu_like,
                12,
                Table::GptEsp,
            ),
        ),
        (
            "GPT, FAT16 16 MiB, BOOTAA64",
            esp(
                d,
                "arm",
                16,
                4,
                16384,
                boot,
                &[("/EFI/BOOT/BOOTAA64.EFI", &aa64)],
                20,
                Table::GptEsp,
            ),
        ),
        (
            "GPT, FAT32 34 MiB (512 B clusters), Ubuntu-like",
            esp(
                d,
                "fat32",
                32,
                1,
                34816,
                ubuntu_dirs,
                ubuntu_like,
                40,
                Table::GptEsp,
            ),
        ),
        (
            "GPT, FAT32 34 MiB, 41 files in \\EFI\\BOOT",
            esp(
                d,
                "crowded",
                32,
                1,
                34816,
                boot,
                &crowded,
                40,
                Table::GptEsp,
            ),
        ),
        (
            "GPT, FAT16, ESP without a loader",
            esp(
                d,
                "none",
                16,
                2,
                8192,
                &["/EFI", "/EFI/debian"],
                &[("/EFI/debian/grubx64.efi", &x64)],
                12,
                Table::GptEsp,
            ),
        ),
        (
            "MBR, 0xEF FAT16, BOOTAA64",
            esp(
                d,
                "mbref",
                16,
                2,
                8192,
                boot,
                &[("/EFI/BOOT/BOOTAA64.EFI", &aa64)],
                12,
                Table::MbrEsp,
            ),
        ),
        (
            "MBR, active Linux partition (V1)",
            esp(d, "v1", 16, 2, 8192, &[], &[], 12, Table::MbrActiveLinux),
        ),
    ];
    println!(
        "architecture check (find_boot_loaders), cap {} bytes:",
        ESP_READ_CAP
    );
    println!(
        "{:<50} {:>6} {:>8} {:>10} {:>12}  outcome",
        "disk", "reads", "bytes", "µs/check", "at 20ms/read"
    );
    for (name, path) in cases {
        let file = FileReader::open(&path).expect("open");
        let len = file.len();
        let inspection = inspect(&file, len, &Expectations::new("disk.vhd"))
            .await
            .expect("the bench disks are valid");
        let reader = CountingReader::new(file);
        let scan = find_boot_loaders(
            &reader,
            &inspection.partition_scheme,
            inspection.virtual_size,
        )
        .await
        .expect("local reads");
        assert!(scan.bytes_read <= ESP_READ_CAP);
        let plain = reader.into_inner();
        let runs = 200u32;
        let start = Instant::now();
        for _ in 0..runs {
            let again = find_boot_loaders(
                &plain,
                &inspection.partition_scheme,
                inspection.virtual_size,
            )
            .await
            .expect("local reads");
            assert_eq!(again.outcome, scan.outcome);
        }
        let per = start.elapsed() / runs;
        let outcome = match &scan.outcome {
            vhd::LoaderOutcome::Checked { fat, loaders, .. } => format!(
                "{fat}: {}",
                if loaders.is_empty() {
                    "no loader".to_string()
                } else {
                    loaders
                        .iter()
                        .map(|l| l.architecture.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            vhd::LoaderOutcome::Unchecked(u) => format!("could not check: {u}"),
        };
        println!(
            "{name:<50} {:>6} {:>8} {:>10} {:>9} ms  {outcome}",
            scan.reads,
            scan.bytes_read,
            per.as_micros(),
            u64::from(scan.reads) * READ_MS,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn esp(
    dir: &std::path::Path,
    name: &str,
    bits: u8,
    sectors_per_cluster: u8,
    size_kib: u64,
    dirs: &[&str],
    files: &[(&str, &[u8])],
    disk_mib: u64,
    table: Table,
) -> PathBuf {
    let fat = fat_image(
        dir,
        name,
        &Fat {
            bits,
            sectors_per_cluster,
            size_kib,
            dirs,
            files,
        },
    );
    disk(dir, &format!("{name}.vhd"), disk_mib, table, &fat)
}
