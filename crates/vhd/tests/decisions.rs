//! Table tests of the pure decision (`vhd::check`) on disks built in memory, and of `inspect`'s I/O
//! contract: read failures are retryable errors, never rejections, and a multi-terabyte blob costs
//! two small reads.

use bytes::Bytes;
use vhd::footer::{self, DiskType};
use vhd::partition::write::{Part, gpt, mbr};
use vhd::partition::{ESP_GUID, MBR_TYPE_PROTECTIVE};
use vhd::{
    BytesReader, CountingReader, Evidence, Expectations, HEAD_LEN, InspectError, Limits,
    ProblemCode, RangeRead, check, fixed_vhd_in_memory, inspect,
};

const MIB: u64 = 1 << 20;

/// Runs `check` on a whole blob held in memory, slicing head and tail as `inspect` would.
fn decide(blob: &[u8], expect: &Expectations) -> Result<vhd::Inspection, vhd::Problem> {
    let len = blob.len();
    let ev = Evidence {
        blob_len: len as u64,
        head: &blob[..len.min(HEAD_LEN as usize)],
        tail: &blob[len - len.min(512)..],
        gpt_entries: None,
    };
    check(&ev, expect)
}

fn with_footer(disk_len: usize, footer: [u8; 512]) -> Vec<u8> {
    let mut v = vec![0u8; disk_len];
    v.extend_from_slice(&footer);
    v
}

fn dynamic_like(disk_type: DiskType) -> Vec<u8> {
    // Footer copy, dynamic header, some table, footer: the shape of a small dynamic VHD.
    let f = footer::build(8 * MIB, disk_type, b"win ");
    let mut v = f.to_vec();
    let mut header = [0u8; 1024];
    header[..8].copy_from_slice(b"cxsparse");
    v.extend_from_slice(&header);
    v.extend_from_slice(&[0xff; 512]);
    v.extend_from_slice(&f);
    v
}

#[test]
fn table_of_rejections() {
    let ok = fixed_vhd_in_memory(vec![0u8; 8 * MIB as usize]);
    let mut bad_checksum = ok.clone();
    let n = bad_checksum.len();
    bad_checksum[n - 512 + 48 + 5] ^= 0x10; // the current size: checksum catches it
    let mut dynamic_bad_tail = dynamic_like(DiskType::Dynamic);
    let n = dynamic_bad_tail.len();
    dynamic_bad_tail[n - 100] ^= 1;
    let mut bad_protective = vec![0u8; 8 * MIB as usize];
    mbr(
        &mut bad_protective,
        &[(false, MBR_TYPE_PROTECTIVE, 1, 1000)],
    );

    let mut small_limits = Expectations::new("big.vhd");
    small_limits.limits = Limits {
        min_virtual_size: MIB,
        max_virtual_size: 4 * MIB,
    };
    let plain = Expectations::new("uploads/disk.vhd");

    let cases: Vec<(&str, Vec<u8>, &Expectations, ProblemCode, &str)> = vec![
        (
            "footer says 4 MiB on an 8 MiB blob",
            with_footer(
                8 * MIB as usize,
                footer::build(4 * MIB, DiskType::Fixed, b"qem2"),
            ),
            &plain,
            ProblemCode::VhdSizeMismatch,
            "The footer's virtual size 4,194,304 + 512 ≠ blob length 8,389,120 (4,194,304 bytes too many).",
        ),
        (
            "footer says 16 MiB on an 8 MiB blob",
            with_footer(
                8 * MIB as usize,
                footer::build(16 * MIB, DiskType::Fixed, b"qem2"),
            ),
            &plain,
            ProblemCode::VhdSizeMismatch,
            "8,388,608 bytes short",
        ),
        (
            "virtual size 0",
            footer::build(0, DiskType::Fixed, b"qem2").to_vec(),
            &plain,
            ProblemCode::VhdTooSmall,
            "The virtual size 0 bytes is below the minimum 1,048,576 bytes (1 MiB).",
        ),
        (
            "8 MiB over a 4 MiB limit",
            ok.clone(),
            &small_limits,
            ProblemCode::VhdTooLarge,
            "`qemu-img resize --shrink`).",
        ),
        (
            "unaligned, not made by qemu",
            with_footer(
                8 * MIB as usize + 512,
                footer::build(8 * MIB + 512, DiskType::Fixed, b"win "),
            ),
            &plain,
            ProblemCode::VhdSizeNotAligned,
            "it is 8 MiB and 512 bytes",
        ),
        (
            "checksum",
            bad_checksum,
            &plain,
            ProblemCode::VhdFooterChecksum,
            "damaged or edited",
        ),
        (
            "dynamic by its end footer",
            dynamic_like(DiskType::Dynamic),
            &plain,
            ProblemCode::VhdIsDynamic,
            "its footer says so",
        ),
        (
            "differencing",
            dynamic_like(DiskType::Differencing),
            &plain,
            ProblemCode::VhdIsDifferencing,
            "a differencing VHD",
        ),
        (
            "dynamic with a damaged end footer",
            dynamic_bad_tail,
            &plain,
            ProblemCode::VhdIsDynamic,
            "end footer's checksum is also wrong",
        ),
        (
            "disk type 5",
            with_footer(
                8 * MIB as usize,
                footer::build(8 * MIB, DiskType::Other(5), b"qem2"),
            ),
            &plain,
            ProblemCode::VhdUnsupportedDiskType,
            "disk type is 5",
        ),
        (
            "protective MBR without GPT",
            fixed_vhd_in_memory(bad_protective),
            &plain,
            ProblemCode::PartitionTableInvalid,
            "no GPT header",
        ),
        (
            "300 bytes of binary",
            vec![0x01; 300],
            &plain,
            ProblemCode::NotAVhd,
            "only 300 bytes",
        ),
        (
            "1 MiB of binary noise",
            vec![0xa5; MIB as usize],
            &plain,
            ProblemCode::NotAVhd,
            "no format we know",
        ),
        (
            "zip",
            b"PK\x03\x04rest of a zip".to_vec(),
            &plain,
            ProblemCode::NotAVhd,
            "a zip archive",
        ),
    ];
    for (name, blob, expect, code, needle) in cases {
        match decide(&blob, expect) {
            Ok(i) => panic!("{name}: accepted {i:?}"),
            Err(p) => {
                assert_eq!(p.code, code, "{name}: {p}");
                assert!(
                    p.message.contains(needle) || p.fix.contains(needle),
                    "{name}: {p}"
                );
            }
        }
    }
}

/// A 4 MiB disk with a GPT holding one EFI System Partition.
fn esp_disk() -> Vec<u8> {
    let mut disk = vec![0u8; 4 * MIB as usize];
    let esp = Part {
        type_guid: ESP_GUID,
        first_lba: 2048,
        last_lba: 4095,
        name: "EFI",
    };
    gpt(&mut disk, &[esp]);
    disk
}

#[test]
fn accepted_inspections_serialize() {
    let disk = esp_disk();
    let blob = fixed_vhd_in_memory(disk);
    let i = decide(&blob, &Expectations::new("a.vhd")).expect("accepted");
    let json = serde_json::to_value(&i).expect("serializes");
    assert_eq!(json["virtual_size"], 4 * MIB);
    assert_eq!(json["generation"], "V2");
    assert_eq!(json["generation_source"], "Detected");
    assert_eq!(json["partition_scheme"]["scheme"], "Gpt");
    assert_eq!(
        json["partition_scheme"]["partitions"][0]["type_guid"],
        ESP_GUID
    );
    assert_eq!(json["footer"]["disk_type"], "Fixed");
    let back: vhd::Inspection = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, i);
}

/// A blob of `len` bytes that is all zeros except a fixed-VHD footer at the end; nothing is
/// allocated for the zeros, so it can be terabytes long.
struct HugeBlob {
    len: u64,
}

impl RangeRead for HugeBlob {
    type Error = std::io::Error;
    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, Self::Error> {
        let footer = footer::build(self.len - 512, DiskType::Fixed, b"qem2");
        let end = (offset + len).min(self.len);
        let out: Vec<u8> = (offset..end)
            .map(|at| {
                at.checked_sub(self.len - 512)
                    .map_or(0, |i| footer[i as usize])
            })
            .collect();
        Ok(Bytes::from(out))
    }
}

#[tokio::test]
async fn a_multi_terabyte_blob_costs_two_small_reads() {
    let len = (4u64 << 40) + 512;
    let reader = CountingReader::new(HugeBlob { len });
    let err = inspect(&reader, len, &Expectations::new("huge.vhd"))
        .await
        .expect_err("over 2 TiB");
    let p = err.problem().expect("a rejection");
    assert_eq!(p.code, ProblemCode::VhdTooLarge, "{p}");
    assert!(p.message.contains("4,398,046,511,104 bytes (4 TiB)"), "{p}");
    assert!(
        !p.fix.contains("shallow"),
        "advice offers nothing galleon cannot do: {p}"
    );
    assert_eq!(reader.ranges(), vec![(len - 512, 512), (0, HEAD_LEN)]);
    assert_eq!(reader.bytes_read(), HEAD_LEN + 512);

    let mut shallow = Expectations::new("huge.vhd");
    shallow.limits = Limits::SHALLOW_REPLICATION;
    let i = inspect(&HugeBlob { len }, len, &shallow)
        .await
        .expect("fits shallow replication");
    assert_eq!(i.virtual_size, 4 << 40);
}

struct Failing;

impl RangeRead for Failing {
    type Error = std::io::Error;
    async fn read_range(&self, _offset: u64, _len: u64) -> Result<Bytes, Self::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "storage went away",
        ))
    }
}

#[tokio::test]
async fn read_failures_are_retryable_errors_not_rejections() {
    let err = inspect(&Failing, 8 * MIB + 512, &Expectations::new("x.vhd"))
        .await
        .expect_err("reads fail");
    assert!(err.is_retryable());
    assert!(err.problem().is_none());
    match &err {
        InspectError::Read {
            offset,
            len,
            source,
        } => {
            assert_eq!((*offset, *len), (8 * MIB, 512));
            assert_eq!(source.to_string(), "storage went away");
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    let cause = std::error::Error::source(&err).map(|s| s.to_string());
    assert_eq!(
        cause.as_deref(),
        Some("storage went away"),
        "the cause chain is kept"
    );
}

#[tokio::test]
async fn a_blob_shorter_than_announced_is_a_short_read() {
    let blob = fixed_vhd_in_memory(vec![0u8; MIB as usize]);
    let announced = blob.len() as u64 + 4096;
    let err = inspect(
        &BytesReader(Bytes::from(blob)),
        announced,
        &Expectations::new("x.vhd"),
    )
    .await
    .expect_err("short");
    assert!(
        matches!(err, InspectError::ShortRead { got: 0, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn partitions_beyond_the_end_of_the_disk_mean_it_was_cut() {
    let mut disk = vec![0u8; 4 * MIB as usize];
    mbr(&mut disk, &[(true, 0x83, 2048, 16_384)]); // ends at LBA 18,431; the disk has 8,192 sectors
    let blob = fixed_vhd_in_memory(disk);
    let p = decide(&blob, &Expectations::new("cut.vhd")).expect_err("rejected");
    assert_eq!(p.code, ProblemCode::PartitionTableInvalid, "{p}");
    assert!(
        p.message
            .contains("partition 1 ends at LBA 18,431 but the disk's last LBA is 8,191"),
        "{p}"
    );
}

#[test]
fn notes_say_what_was_noticed_without_rejecting() {
    // A GPT disk grown after partitioning (as the alignment recipe does): backup header not at the end.
    let mut disk = esp_disk();
    disk.resize(5 * MIB as usize, 0);
    let i = decide(&fixed_vhd_in_memory(disk), &Expectations::new("grown.vhd")).expect("accepted");
    assert!(
        i.notes.iter().any(|n| n
            .contains("backup header is recorded at LBA 8,191 but the disk's last LBA is 10,239")),
        "{:?}",
        i.notes
    );

    // Blank disk, nothing declared: the caller is told to declare a generation.
    let i = decide(
        &fixed_vhd_in_memory(vec![0u8; MIB as usize]),
        &Expectations::new("blank.vhd"),
    )
    .expect("accepted");
    assert_eq!(i.generation, None);
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("No hyperVGeneration was declared")),
        "{:?}",
        i.notes
    );
}

#[test]
fn a_zero_size_disk_is_handled_when_the_minimum_allows_it() {
    let mut expect = Expectations::new("zero.vhd");
    expect.limits.min_virtual_size = 0;
    let i = decide(&footer::build(0, DiskType::Fixed, b"qem2"), &expect).expect("accepted");
    assert_eq!(i.virtual_size, 0);
}

/// Mutated headers, tables and footers (CRCs and checksum recomputed so parsing goes deep) never
/// panic: every input gets an inspection or a problem.
#[test]
fn mutated_inputs_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = fixed_vhd_in_memory(esp_disk());
    let mut outcomes = std::collections::BTreeSet::new();
    for round in 0..3000 {
        let mut blob = base.clone();
        for _ in 0..(1 + next() % 4) {
            let at = match next() % 3 {
                0 => 512 + (next() % 92) as usize,              // GPT header
                1 => (next() % 1024) as usize,                  // MBR and header sector
                _ => blob.len() - 512 + (next() % 85) as usize, // footer fields
            };
            blob[at] = next() as u8;
        }
        if round % 2 == 0 {
            blob[512 + 16..512 + 20].fill(0);
            let crc = crc32fast::hash(&blob[512..604]);
            blob[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
        }
        if round % 3 != 0 {
            let n = blob.len();
            let mut f = [0u8; 512];
            f.copy_from_slice(&blob[n - 512..]);
            let sum = footer::checksum(&f);
            blob[n - 512 + 64..n - 512 + 68].copy_from_slice(&sum.to_be_bytes());
        }
        let cut = if round % 5 == 0 {
            (next() % blob.len() as u64) as usize
        } else {
            blob.len()
        };
        let mut expect = Expectations::new("fuzz.vhd");
        if round % 7 == 0 {
            expect.declared_generation = Some(vhd::Generation::V1);
        }
        let outcome = match decide(&blob[..cut.max(1)], &expect) {
            Ok(_) => "accepted".to_string(),
            Err(p) => p.code.to_string(),
        };
        outcomes.insert(outcome);
    }
    for expected in [
        "accepted",
        "PartitionTableInvalid",
        "VhdFooterChecksum",
        "GenerationMismatch",
        "VhdTruncated",
    ] {
        assert!(
            outcomes.contains(expected),
            "no {expected} among {outcomes:?}"
        );
    }
}
