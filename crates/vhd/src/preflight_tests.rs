//! Table tests of the preflight rules, over disks built in memory.

use super::*;
use crate::check::{Evidence, check, fixed_vhd_in_memory};
use crate::esp::{BootLoader, Unchecked};
use crate::fat::FatKind;
use crate::partition::write::{Part, gpt, mbr};
use crate::partition::{BIOS_BOOT_GUID, ESP_GUID, MBR_TYPE_ESP};

const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const DISK: usize = 4 << 20;

fn part(type_guid: &'static str, first_lba: u64, last_lba: u64) -> Part<'static> {
    Part {
        type_guid,
        first_lba,
        last_lba,
        name: "",
    }
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    Blank,
    GptEsp,
    GptBiosBoot,
    GptEspAndBiosBoot,
    GptData,
    MbrActive,
    MbrData,
    MbrEsp,
}

fn inspection(layout: Layout, declared: Option<Generation>) -> Inspection {
    let mut d = vec![0u8; DISK];
    match layout {
        Layout::Blank => {}
        Layout::GptEsp => gpt(
            &mut d,
            &[part(ESP_GUID, 2048, 4095), part(LINUX, 4096, 8000)],
        ),
        Layout::GptBiosBoot => gpt(&mut d, &[part(BIOS_BOOT_GUID, 34, 2047)]),
        Layout::GptEspAndBiosBoot => gpt(
            &mut d,
            &[part(BIOS_BOOT_GUID, 34, 2047), part(ESP_GUID, 2048, 4095)],
        ),
        Layout::GptData => gpt(&mut d, &[part(LINUX, 2048, 8000)]),
        Layout::MbrActive => mbr(&mut d, &[(true, 0x83, 2048, 4000)]),
        Layout::MbrData => mbr(&mut d, &[(false, 0x83, 2048, 4000)]),
        Layout::MbrEsp => mbr(&mut d, &[(false, MBR_TYPE_ESP, 2048, 4000)]),
    }
    let blob = fixed_vhd_in_memory(d);
    let mut ex = Expectations::new("os.vhd");
    ex.declared_generation = declared;
    check(
        &Evidence {
            blob_len: blob.len() as u64,
            head: &blob[..64 * 1024],
            tail: &blob[blob.len() - 512..],
            gpt_entries: None,
        },
        &ex,
    )
    .unwrap_or_else(|p| panic!("{layout:?} {declared:?}: {p}"))
}

#[test]
fn security_types_parse_from_arm_spelling() {
    for t in SecurityType::ALL {
        assert_eq!(SecurityType::parse(t.as_str()), Some(t));
        assert_eq!(
            serde_json::to_value(t).expect("serializes"),
            serde_json::json!(t.as_str())
        );
    }
    assert_eq!(
        SecurityType::parse("trustedlaunch"),
        Some(SecurityType::TrustedLaunch)
    );
    assert_eq!(SecurityType::parse("Standard"), None);
    assert_eq!(SecurityType::parse("TrustedLaunchV2"), None);
}

/// (security type, architecture, layout, declared generation, rejected, words in the message)
type GenerationCase = (
    Option<SecurityType>,
    Architecture,
    Layout,
    Option<Generation>,
    bool,
    &'static str,
);

#[test]
fn features_that_need_generation_2() {
    use Architecture::{Arm64, X64};
    use Layout::*;
    use SecurityType::*;
    let v1 = Some(Generation::V1);
    let v2 = Some(Generation::V2);
    // (security type, architecture, layout, declared generation, rejected, words in the message)
    let cases: &[GenerationCase] = &[
        (None, X64, MbrActive, None, false, ""),
        (None, X64, GptEsp, v2, false, ""),
        (Some(TrustedLaunch), X64, GptEsp, None, false, ""),
        (Some(TrustedLaunch), X64, GptEsp, v2, false, ""),
        (Some(ConfidentialVM), X64, GptEsp, v2, false, ""),
        (None, Arm64, GptEsp, v2, false, ""),
        (Some(TrustedLaunchSupported), Arm64, GptEsp, v2, false, ""),
        // Hybrid disks boot either way; the declared V1 is what is wrong.
        (
            Some(TrustedLaunch),
            X64,
            GptEspAndBiosBoot,
            v1,
            true,
            "declares hyperVGeneration V1",
        ),
        (
            Some(TrustedLaunch),
            X64,
            MbrActive,
            None,
            true,
            "implies hyperVGeneration V1",
        ),
        (
            Some(ConfidentialVmSupported),
            X64,
            GptBiosBoot,
            None,
            true,
            "Confidential VM",
        ),
        (None, Arm64, MbrActive, v1, true, "architecture Arm64"),
        (
            Some(TrustedLaunchAndConfidentialVmSupported),
            Arm64,
            MbrData,
            None,
            true,
            "and architecture Arm64",
        ),
        // No ESP at all: V2 cannot boot it, whatever was declared.
        (
            Some(TrustedLaunch),
            X64,
            Blank,
            v2,
            true,
            "no partition table",
        ),
        (
            Some(TrustedLaunch),
            X64,
            GptData,
            v2,
            true,
            "GPT with 1 partition",
        ),
        (None, Arm64, MbrEsp, v2, true, "MBR with 1 partition"),
    ];
    for (i, &(security, arch, layout, declared, rejected, words)) in cases.iter().enumerate() {
        let os = inspection(layout, declared);
        let got = check_generation(&os, security, arch);
        let what = format!("case {i}: {security:?} {arch} {layout:?} {declared:?}: {got:?}");
        assert_eq!(got.is_err(), rejected, "{what}");
        if let Err(p) = got {
            assert_eq!(p.code, ProblemCode::FeatureNeedsGenerationV2, "{what}");
            assert!(p.message.contains(words), "{what}");
            assert!(p.message.contains("generation 2"), "{what}");
            assert!(p.fix.contains("V2") && p.fix.contains("Or drop"), "{what}");
        }
    }
}

fn checked(archs: &[Architecture]) -> LoaderOutcome {
    LoaderOutcome::Checked {
        partition: 1,
        fat: FatKind::Fat16,
        loaders: archs
            .iter()
            .map(|&a| BootLoader {
                architecture: a,
                path: format!(r"\EFI\BOOT\{}", a.loader_name()),
                size: 1024,
            })
            .collect(),
    }
}

#[test]
fn declared_architecture_against_the_loaders_found() {
    use Architecture::{Arm64, X64, X86};
    let unchecked = LoaderOutcome::Unchecked(Unchecked::NoEsp);
    // (declared, outcome, rejected, words in the note or the message, words in the fix)
    let cases: Vec<(Architecture, LoaderOutcome, bool, &str, &str)> = vec![
        (
            X64,
            checked(&[X64]),
            false,
            r"confirmed by the disk's \EFI\BOOT\BOOTX64.EFI",
            "",
        ),
        (Arm64, checked(&[Arm64]), false, "BOOTAA64.EFI", ""),
        (X64, checked(&[X64, Arm64]), false, "confirmed", ""),
        (Arm64, checked(&[X64, Arm64]), false, "confirmed", ""),
        (
            X64,
            checked(&[]),
            false,
            "could not check it: the EFI System Partition has no",
            "",
        ),
        (
            Arm64,
            unchecked.clone(),
            false,
            "Arm64 accepted as declared; could not check it: the disk has no EFI System Partition",
            "",
        ),
        (
            X64,
            LoaderOutcome::Unchecked(Unchecked::CapReached { cap: 262_144 }),
            false,
            "more than 262144 bytes",
            "",
        ),
        (
            X64,
            checked(&[Arm64]),
            true,
            r"declares architecture x64 but the disk's EFI System Partition holds \EFI\BOOT\BOOTAA64.EFI (the Arm64 loader)",
            "declare architecture Arm64",
        ),
        (
            Arm64,
            checked(&[X64]),
            true,
            "(the x64 loader)",
            "upload the Arm64 build",
        ),
        (
            X64,
            checked(&[X86]),
            true,
            "BOOTIA32.EFI (the x86 loader)",
            "--target=x86_64-efi --removable",
        ),
        (
            Arm64,
            checked(&[X86]),
            true,
            "no \\EFI\\BOOT\\BOOTAA64.EFI",
            "arm64-efi",
        ),
    ];
    for (i, (declared, outcome, rejected, words, fix_words)) in cases.into_iter().enumerate() {
        let got = check_architecture(declared, &outcome, "uploads/img.vhd");
        let what = format!("case {i}: {declared} {outcome:?}: {got:?}");
        match got {
            Ok(note) => {
                assert!(!rejected, "{what}");
                assert!(note.contains(words), "{what}");
            }
            Err(p) => {
                assert!(rejected, "{what}");
                assert_eq!(p.code, ProblemCode::ArchitectureMismatch, "{what}");
                assert!(p.message.contains(words), "{what}");
                assert!(p.fix.contains(fix_words), "{what}");
            }
        }
    }
}

#[test]
fn data_disks_must_not_carry_an_os_layout() {
    use Layout::*;
    // (layout, rejected, words)
    let cases = [
        (Blank, false, ""),
        (GptData, false, ""),
        (MbrData, false, ""),
        (GptEsp, true, "a GPT with an EFI System Partition"),
        (GptBiosBoot, true, "a GPT with a BIOS boot partition"),
        (
            GptEspAndBiosBoot,
            true,
            "EFI System Partition and a BIOS boot",
        ),
        (
            MbrActive,
            true,
            "an MBR with an active (bootable) partition",
        ),
        (MbrEsp, true, "type 0xEF"),
    ];
    for (layout, rejected, words) in cases {
        let disk = inspection(layout, None);
        let got = check_data_disk(2, &disk, "uploads/data 1.vhd");
        assert_eq!(got.is_err(), rejected, "{layout:?}: {got:?}");
        assert_eq!(os_layout(&disk.partition_scheme).is_some(), rejected);
        if let Err(p) = got {
            assert_eq!(p.code, ProblemCode::DataDiskHasOsLayout);
            assert!(
                p.message.starts_with("Data disk LUN 2 ('data 1.vhd') has"),
                "{p}"
            );
            assert!(p.message.contains(words), "{layout:?}: {p}");
            assert!(p.fix.contains("name it as the OS disk"), "{p}");
        }
    }
}

#[test]
fn luns_are_unique() {
    assert_eq!(check_luns(&[]), Ok(()));
    assert_eq!(
        check_luns(&[(0, "a.vhd"), (1, "b.vhd"), (5, "c.vhd")]),
        Ok(())
    );
    let p = check_luns(&[(0, "a.vhd"), (1, "b.vhd"), (1, "c.vhd"), (0, "d.vhd")])
        .expect_err("LUN 1 twice");
    assert_eq!(p.code, ProblemCode::DuplicateLun);
    assert!(
        p.message
            .contains("LUN 1 is given to two data disks, b.vhd and c.vhd"),
        "{p}"
    );
    assert!(p.fix.contains("LUN 2 is free"), "{p}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_misaligned_data_disk_is_rejected_naming_its_lun() {
    let blob_name = "uploads/data0.vhd";
    let ex = Expectations::new(blob_name);
    let aligned = fixed_vhd_in_memory(vec![0u8; DISK]);
    let reader = crate::BytesReader(aligned.clone().into());
    let ok = inspect_data_disk(&reader, aligned.len() as u64, &ex, 3).await;
    assert!(ok.is_ok(), "a 1 MiB-aligned data disk passes: {ok:?}");
    // One sector past a whole MiB, as qemu-img makes it without force_size.
    let misaligned = fixed_vhd_in_memory(vec![0u8; DISK + 512]);
    let reader = crate::BytesReader(misaligned.clone().into());
    let err = inspect_data_disk(&reader, misaligned.len() as u64, &ex, 3)
        .await
        .expect_err("a misaligned data disk is refused");
    let p = err.problem().expect("a rejection, not an I/O error");
    assert_eq!(p.code, ProblemCode::VhdSizeNotAligned, "{p}");
    assert!(
        p.message.starts_with("Data disk LUN 3: ") && p.message.contains("not a multiple of 1 MiB"),
        "{p}"
    );
    assert!(
        p.fix.contains("qemu-img") && p.fix.contains("force_size"),
        "{p}"
    );
}
