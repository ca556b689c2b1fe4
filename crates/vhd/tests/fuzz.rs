//! Fuzzing the disk readers: the footer, partition-table and EFI System Partition (FAT) readers run on
//! real disks (qemu-img, mkfs.vfat, mtools) with bytes changed where they read. They must never panic,
//! never fail on bytes they could read, and never read more than their bounds.
//!
//! `GALLEON_FUZZ_SECONDS` per target (3 s by default; `scripts/fuzz.sh` runs each for 60 s).

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::disks::{MIB, Table, boot_disk, pe_stub, tools_available};
use fuzzing::{apply, edits, fuzz};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;
use vhd::partition::MAX_GPT_ENTRIES_BYTES;
use vhd::{
    Architecture, CountingReader, ESP_READ_CAP, Expectations, Generation, InspectError,
    SecurityType, find_boot_loaders, inspect_os_disk,
};

/// A disk in memory as its non-zero runs: a 40 MiB FAT32 disk is a few hundred KiB here.
#[derive(Clone)]
struct Sparse {
    name: &'static str,
    len: u64,
    runs: Vec<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for Sparse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes, {} runs)",
            self.name,
            self.len,
            self.runs.len()
        )
    }
}

impl Sparse {
    fn of(name: &'static str, bytes: &[u8]) -> Sparse {
        const BLOCK: usize = 4096;
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (i, block) in bytes.chunks(BLOCK).enumerate() {
            if block.iter().all(|b| *b == 0) {
                continue;
            }
            let at = (i * BLOCK) as u64;
            match runs.last_mut() {
                Some((start, run)) if *start + run.len() as u64 == at => {
                    run.extend_from_slice(block)
                }
                _ => runs.push((at, block.to_vec())),
            }
        }
        Sparse {
            name,
            len: bytes.len() as u64,
            runs,
        }
    }
}

impl vhd::RangeRead for Sparse {
    type Error = std::io::Error;
    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl std::future::Future<Output = Result<bytes::Bytes, Self::Error>> + Send {
        let end = offset.saturating_add(len).min(self.len);
        let mut out = vec![0u8; end.saturating_sub(offset) as usize];
        for (at, run) in &self.runs {
            let run_end = at + run.len() as u64;
            if run_end <= offset || *at >= end {
                continue;
            }
            let from = offset.max(*at);
            let to = end.min(run_end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&run[(from - at) as usize..(to - at) as usize]);
        }
        std::future::ready(Ok(out.into()))
    }
}

/// A seed disk to make: name, FAT bits, sectors per cluster, FAT KiB, disk MiB, table, files.
type SeedDisk<'a> = (
    &'static str,
    u8,
    u8,
    u64,
    u64,
    Table,
    Vec<(&'a str, &'a [u8])>,
);

/// The seed disks, made once: GPT and MBR disks with FAT12/16/32 ESPs holding x64 and Arm64 loaders, a
/// generation 1 disk, and what qemu-img makes that Azure refuses (dynamic VHD, VHDX, an unpadded size).
fn seeds() -> &'static [Sparse] {
    static SEEDS: OnceLock<Vec<Sparse>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let x64 = pe_stub(0x8664);
        let arm = pe_stub(0xAA64);
        let names: Vec<String> = (0..12)
            .map(|i| format!("/EFI/BOOT/long name {i}.efi"))
            .collect();
        let mut many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        many.push(("/EFI/BOOT/BOOTX64.EFI", &x64));
        let mut out = Vec::new();
        let made: [SeedDisk<'_>; 5] = [
            (
                "gpt-fat12-aa64",
                12,
                1,
                1024,
                4,
                Table::GptEsp,
                vec![("/EFI/BOOT/BOOTAA64.EFI", &arm)],
            ),
            (
                "gpt-fat16-x64",
                16,
                2,
                8192,
                12,
                Table::GptEsp,
                vec![("/EFI/BOOT/BOOTX64.EFI", &x64)],
            ),
            (
                "gpt-fat32-long-names",
                32,
                1,
                34816,
                40,
                Table::GptEsp,
                many,
            ),
            (
                "mbr-esp-fat12",
                12,
                1,
                1024,
                4,
                Table::MbrEsp,
                vec![("/EFI/BOOT/BOOTX64.EFI", &x64)],
            ),
            ("mbr-gen1", 12, 1, 1024, 4, Table::MbrActiveLinux, vec![]),
        ];
        for (name, bits, spc, kib, mib, table, files) in made {
            let vhd = boot_disk(d, name, (bits, spc, kib), mib, table, &files);
            out.push(Sparse::of(name, &vhd));
        }
        for (name, format, options, size) in [
            ("dynamic", "vpc", "subformat=dynamic", "4M"),
            ("vhdx", "vhdx", "subformat=dynamic", "4M"),
            ("fixed-unpadded", "vpc", "subformat=fixed", "3M"),
        ] {
            let path = d.join(name);
            let status = std::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", format, "-o", options])
                .arg(&path)
                .arg(size)
                .status()
                .expect("qemu-img runs");
            assert!(status.success(), "qemu-img create {name}");
            out.push(Sparse::of(name, &std::fs::read(path).expect("read disk")));
        }
        out
    })
}

/// A seed disk with some of its runs edited (each keeps its place and length) and maybe a new length.
fn damaged(only_esp: bool) -> impl Strategy<Value = Sparse> {
    (
        select(seeds().to_vec()),
        prop::collection::vec((any::<Index>(), edits(6)), 1..4),
        proptest::option::weighted(0.1, any::<Index>()),
    )
        .prop_map(move |(mut disk, changes, cut)| {
            let tail = disk.len.saturating_sub(512);
            // The ESP target changes only what lies between the partition table and the footer.
            let editable: Vec<usize> = (0..disk.runs.len())
                .filter(|i| !only_esp || (disk.runs[*i].0 >= MIB && disk.runs[*i].0 < tail))
                .collect();
            for (which, e) in changes {
                if editable.is_empty() {
                    break;
                }
                let run = &mut disk.runs[editable[which.index(editable.len())]].1;
                let len = run.len();
                apply(run, &e);
                run.resize(len, 0);
            }
            if let Some(cut) = cut.filter(|_| !only_esp) {
                disk.len = cut.index(disk.len as usize + 1) as u64;
            }
            disk
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// The whole OS disk preflight (footer, partition table, GPT entries, ESP, rules) on damaged disks,
/// declared every way a manifest can: no panic, no read error, and no more read than its bound.
#[test]
fn fuzz_vhd_footer_and_partition_table() {
    if !tools_available("fuzz_vhd_footer_and_partition_table") {
        return;
    }
    let rt = runtime();
    let declared = (
        select(vec![None, Some(Generation::V1), Some(Generation::V2)]),
        any::<bool>(),
        select(vec![
            None,
            Some(SecurityType::TrustedLaunch),
            Some(SecurityType::ConfidentialVM),
        ]),
        select(vec![
            None,
            Some(Architecture::X64),
            Some(Architecture::Arm64),
        ]),
    );
    let (accepted, rejected) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz(
        "vhd footer and partition table",
        (damaged(false), declared),
        |(disk, (generation, mismatch, security, arch))| {
            let mut expect = Expectations::new("fuzz.vhd");
            expect.declared_generation = generation;
            expect.allow_generation_mismatch = mismatch;
            let len = disk.len;
            let reader = CountingReader::new(disk);
            match rt.block_on(inspect_os_disk(&reader, len, &expect, security, arch)) {
                Ok(_) => {
                    accepted.fetch_add(1, Relaxed);
                }
                Err(InspectError::Rejected(_)) => {
                    rejected.fetch_add(1, Relaxed);
                }
                Err(other) => return Err(format!("an in-memory disk failed to read: {other}")),
            }
            let bound = 512 + 64 * 1024 + MAX_GPT_ENTRIES_BYTES + ESP_READ_CAP;
            if reader.bytes_read() > bound {
                return Err(format!(
                    "read {} bytes, more than the bound {bound}",
                    reader.bytes_read()
                ));
            }
            Ok(())
        },
    );
    let (a, r) = (accepted.load(Relaxed), rejected.load(Relaxed));
    println!("fuzz target vhd footer and partition table: {a} accepted, {r} rejected");
    assert!(
        ran.cases > 0 && a > 0 && r > 0,
        "{a} accepted and {r} rejected"
    );
}

/// The boot-loader scan alone, on disks whose ESP (FAT boot sector, FATs, directories) is damaged and
/// whose partition table is intact: never a panic, never past [`ESP_READ_CAP`].
#[test]
fn fuzz_esp_fat_reader() {
    if !tools_available("fuzz_esp_fat_reader") {
        return;
    }
    let rt = runtime();
    let with_esp: Vec<usize> = seeds()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name.contains("fat"))
        .map(|(i, _)| i)
        .collect();
    assert!(!with_esp.is_empty());
    let (checked, unchecked) = (AtomicU64::new(0), AtomicU64::new(0));
    let ran = fuzz("ESP FAT reader", damaged(true), |disk| {
        let Ok(head) = rt.block_on(vhd::RangeRead::read_range(&disk, 0, 64 * 1024)) else {
            return Err("in-memory read failed".into());
        };
        // Seeds without a readable partition table (VHDX, dynamic) have no ESP to scan.
        let Ok(scheme) = vhd::partition::parse(&head, None) else {
            return Ok(());
        };
        let virtual_size = disk.len.saturating_sub(512);
        match rt.block_on(find_boot_loaders(&disk, &scheme, virtual_size)) {
            Ok(scan) if scan.bytes_read > ESP_READ_CAP => Err(format!(
                "read {} bytes of the ESP, past the cap {ESP_READ_CAP}",
                scan.bytes_read
            )),
            Ok(scan) => {
                match scan.outcome {
                    vhd::LoaderOutcome::Checked { .. } => checked.fetch_add(1, Relaxed),
                    vhd::LoaderOutcome::Unchecked(_) => unchecked.fetch_add(1, Relaxed),
                };
                Ok(())
            }
            Err(e) => Err(format!("an in-memory disk failed to read: {e}")),
        }
    });
    let (c, u) = (checked.load(Relaxed), unchecked.load(Relaxed));
    println!("fuzz target ESP FAT reader: {c} checked, {u} could not check");
    assert!(
        ran.cases > 0 && c > 0 && u > 0,
        "{c} checked and {u} unchecked"
    );
}

/// The fuzzer is not fuzzing nothing: most disks it makes differ from their seed in the bytes kept.
#[test]
fn most_damaged_disks_differ_from_their_seed() {
    if !tools_available("most_damaged_disks_differ_from_their_seed") {
        return;
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = damaged(false);
    let mut changed = 0;
    for _ in 0..200 {
        let disk = strategy
            .new_tree(&mut runner)
            .map(|t| t.current())
            .expect("a disk");
        let seed = seeds()
            .iter()
            .find(|s| s.name == disk.name)
            .expect("its seed");
        if seed.len != disk.len || seed.runs != disk.runs {
            changed += 1;
        }
    }
    assert!(changed > 150, "only {changed} of 200 disks were changed");
}
