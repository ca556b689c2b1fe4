//! Real disks for the boot-loader tests and benchmark: a FAT file system made by `mkfs.vfat`,
//! filled with `mmd`/`mcopy` (mtools), placed in a GPT or MBR partition and converted to a fixed
//! VHD by `qemu-img`. Shared by tests/esp_disks.rs and benches/esp.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vhd::partition::ESP_GUID;
use vhd::partition::write::{Part, gpt, mbr};

pub const MIB: u64 = 1 << 20;
/// Where the ESP starts on every test disk (LBA 2048).
pub const ESP_START: u64 = MIB;

/// `mkfs.vfat`, found on the PATH or in the sbin folders (not on a normal user's PATH in Debian).
pub fn mkfs_vfat() -> &'static str {
    ["mkfs.vfat", "/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
        .into_iter()
        .find(|p| Command::new(p).arg("--help").output().is_ok())
        .unwrap_or("mkfs.vfat")
}

/// True when `mkfs.vfat`, `mmd`, `mcopy` and `qemu-img` can run. Outside CI a missing tool skips
/// (with a message); in CI (`CI=true`) it fails the test, so the checks never silently vanish.
pub fn tools_available(test: &str) -> bool {
    let missing: Vec<&str> = [mkfs_vfat(), "mmd", "mcopy", "qemu-img"]
        .into_iter()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg =
        format!("{test}: {missing:?} not found (apt-get install dosfstools mtools qemu-utils)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI must have them");
    }
    eprintln!("SKIPPED {msg}");
    false
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// What goes into a FAT image.
pub struct Fat<'a> {
    /// `mkfs.vfat -F` (12, 16, 32).
    pub bits: u8,
    /// `mkfs.vfat -s` sectors per cluster.
    pub sectors_per_cluster: u8,
    pub size_kib: u64,
    /// Directories to make, parents first (`/EFI`, `/EFI/BOOT`).
    pub dirs: &'a [&'a str],
    /// Files to copy in: (path in the image, bytes).
    pub files: &'a [(&'a str, &'a [u8])],
}

/// The FAT image file made from `spec`.
pub fn fat_image(dir: &Path, name: &str, spec: &Fat<'_>) -> PathBuf {
    let img = dir.join(format!("{name}.fat"));
    let _ = std::fs::remove_file(&img);
    run(
        mkfs_vfat(),
        &[
            "-C",
            "-F",
            &spec.bits.to_string(),
            "-s",
            &spec.sectors_per_cluster.to_string(),
            "-n",
            "ESP",
            s(&img),
            &spec.size_kib.to_string(),
        ],
    );
    for d in spec.dirs {
        run("mmd", &["-i", s(&img), &format!("::{d}")]);
    }
    for (i, (path, bytes)) in spec.files.iter().enumerate() {
        let src = dir.join(format!("{name}.file{i}"));
        std::fs::write(&src, bytes).expect("write file to copy");
        run("mcopy", &["-i", s(&img), s(&src), &format!("::{path}")]);
    }
    img
}

/// The bytes of a fixed VHD of `disk_mib` MiB, `table` placing a FAT image (`bits`, sectors per
/// cluster, size in KiB) that holds `/EFI/BOOT` and `files`.
pub fn boot_disk(
    dir: &Path,
    name: &str,
    (bits, sectors_per_cluster, size_kib): (u8, u8, u64),
    disk_mib: u64,
    table: Table,
    files: &[(&str, &[u8])],
) -> Vec<u8> {
    let fat = fat_image(
        dir,
        name,
        &Fat {
            bits,
            sectors_per_cluster,
            size_kib,
            dirs: &["/EFI", "/EFI/BOOT"],
            files,
        },
    );
    let vhd = disk(dir, &format!("{name}.vhd"), disk_mib, table, &fat);
    std::fs::read(vhd).expect("read disk")
}

/// How the FAT image is placed on the disk.
#[derive(Clone, Copy)]
pub enum Table {
    /// GPT with the image in an EFI System Partition, then a Linux partition.
    GptEsp,
    /// MBR with the image in a 0xEF partition.
    MbrEsp,
    /// MBR with an active Linux partition holding the image (a generation 1 disk: no ESP).
    MbrActiveLinux,
}

/// A fixed VHD of `disk_mib` MiB holding `fat` at 1 MiB in the partition `table` describes,
/// converted by `qemu-img convert -f raw -O vpc -o subformat=fixed,force_size`.
pub fn disk(dir: &Path, name: &str, disk_mib: u64, table: Table, fat: &Path) -> PathBuf {
    let mut raw = vec![0u8; (disk_mib * MIB) as usize];
    let image = std::fs::read(fat).expect("read FAT image");
    let esp_sectors = (image.len() as u64).div_ceil(512);
    let first = ESP_START / 512;
    let last = first + esp_sectors - 1;
    match table {
        Table::GptEsp => gpt(
            &mut raw,
            &[
                Part {
                    type_guid: ESP_GUID,
                    first_lba: first,
                    last_lba: last,
                    name: "EFI system partition",
                },
                Part {
                    type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                    first_lba: last + 1,
                    last_lba: disk_mib * MIB / 512 - 34,
                    name: "root",
                },
            ],
        ),
        Table::MbrEsp => mbr(&mut raw, &[(false, 0xEF, first as u32, esp_sectors as u32)]),
        Table::MbrActiveLinux => mbr(&mut raw, &[(true, 0x83, first as u32, esp_sectors as u32)]),
    }
    let at = ESP_START as usize;
    raw[at..at + image.len()].copy_from_slice(&image);
    let raw_path = dir.join(format!("{name}.raw"));
    std::fs::write(&raw_path, &raw).expect("write raw disk");
    let vhd = dir.join(name);
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size",
            s(&raw_path),
            s(&vhd),
        ],
    );
    let _ = std::fs::remove_file(raw_path);
    vhd
}

/// A few bytes that start like a PE image for `machine` (0x8664 x64, 0xAA64 Arm64, 0x14C x86).
pub fn pe_stub(machine: u16) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
    b
}
