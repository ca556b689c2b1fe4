//! The image-feature rules checked before anything is written, as plain functions over what
//! [`inspect`](crate::inspect) and [`find_boot_loaders`](crate::find_boot_loaders) learnt:
//! Trusted Launch, confidential VMs and Arm64 need generation V2; the declared architecture must
//! match the boot loader on the disk; data disks carry no OS layout and have unique LUNs.
//!
//! Each rejection is a [`Problem`] with the cause (both facts) and the fix.

use serde::{Deserialize, Serialize};

use crate::check::{Expectations, Inspection};
use crate::esp::{Architecture, LoaderOutcome, LoaderScan, find_boot_loaders};
use crate::partition::{Generation, PartitionScheme};
use crate::problem::{Names, Problem, ProblemCode};
use crate::read::{InspectError, RangeRead, inspect};

/// The image definition's `SecurityType` feature, spelled as ARM spells it. No feature means
/// "Standard" (no security type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityType {
    TrustedLaunch,
    TrustedLaunchSupported,
    ConfidentialVM,
    ConfidentialVmSupported,
    TrustedLaunchAndConfidentialVmSupported,
}

impl SecurityType {
    pub const ALL: [Self; 5] = [
        Self::TrustedLaunch,
        Self::TrustedLaunchSupported,
        Self::ConfidentialVM,
        Self::ConfidentialVmSupported,
        Self::TrustedLaunchAndConfidentialVmSupported,
    ];

    /// ARM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrustedLaunch => "TrustedLaunch",
            Self::TrustedLaunchSupported => "TrustedLaunchSupported",
            Self::ConfidentialVM => "ConfidentialVM",
            Self::ConfidentialVmSupported => "ConfidentialVmSupported",
            Self::TrustedLaunchAndConfidentialVmSupported => {
                "TrustedLaunchAndConfidentialVmSupported"
            }
        }
    }

    /// The value from its ARM spelling (case-insensitive, as ARM compares enum values).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Every security type is a UEFI feature (vTPM, Secure Boot, confidential VMs): generation 2
    /// only.
    pub fn needs_generation_v2(self) -> bool {
        true
    }

    fn what(self) -> &'static str {
        match self {
            Self::TrustedLaunch | Self::TrustedLaunchSupported => "Trusted Launch",
            Self::ConfidentialVM | Self::ConfidentialVmSupported => "Confidential VM",
            Self::TrustedLaunchAndConfidentialVmSupported => "Trusted Launch and Confidential VM",
        }
    }
}

impl std::fmt::Display for SecurityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trusted Launch, confidential VMs and Arm64 run only as Hyper-V generation 2 VMs, which boot
/// UEFI from a GPT disk with an EFI System Partition. Rejects ([`ProblemCode::FeatureNeedsGenerationV2`])
/// an OS disk whose generation (declared, or implied by its layout) is V1, or whose partition
/// table is not a GPT with an ESP (an MBR disk, even one with an 0xEF partition, is refused: Azure
/// generation 2 images are GPT).
pub fn check_generation(
    os: &Inspection,
    security_type: Option<SecurityType>,
    architecture: Architecture,
) -> Result<(), Problem> {
    let why = match (
        security_type.filter(|t| t.needs_generation_v2()),
        architecture,
    ) {
        (Some(t), Architecture::Arm64) => {
            format!("securityType {t} ({}) and architecture Arm64", t.what())
        }
        (Some(t), _) => format!("securityType {t} ({})", t.what()),
        (None, Architecture::Arm64) => "architecture Arm64".to_string(),
        (None, _) => return Ok(()),
    };
    let gpt_esp = matches!(
        os.partition_scheme,
        PartitionScheme::Gpt { has_esp: true, .. }
    );
    if os.generation == Some(Generation::V1) {
        let source = match os.generation_source {
            crate::GenerationSource::Declared => "the manifest declares hyperVGeneration V1",
            _ => "the disk's partition table implies hyperVGeneration V1",
        };
        let fix = if gpt_esp {
            "Declare hyperVGeneration V2 in the manifest (the disk has a GPT with an EFI System \
             Partition, so it can boot as generation 2)."
                .to_string()
        } else {
            gen2_fix()
        };
        return Err(Problem::new(
            ProblemCode::FeatureNeedsGenerationV2,
            format!(
                "The image asks for {why}, which run only on Hyper-V generation 2 (UEFI) VMs, but \
                 {source} ({}).",
                os.partition_scheme.describe()
            ),
            format!("{fix} Or drop {why} from the manifest to publish a generation 1 image."),
        ));
    }
    if !gpt_esp {
        return Err(Problem::new(
            ProblemCode::FeatureNeedsGenerationV2,
            format!(
                "The image asks for {why}, which run only on Hyper-V generation 2 (UEFI) VMs, but \
                 the disk has {}: generation 2 boots a GPT disk with an EFI System Partition.",
                os.partition_scheme.describe()
            ),
            format!(
                "{} Or drop {why} from the manifest to publish a generation 1 image.",
                gen2_fix()
            ),
        ));
    }
    Ok(())
}

fn gen2_fix() -> String {
    "Build the image for UEFI: a GPT disk with an EFI System Partition holding the boot loader \
     (for an existing MBR Linux disk: `gdisk` to convert to GPT, add an ESP of type EF00, then \
     `grub-install --target=x86_64-efi --removable` or the distribution's shim), and declare \
     hyperVGeneration V2."
        .to_string()
}

/// Compares the declared architecture with the boot loaders found on the ESP. Returns a note to
/// log when nothing contradicts it: the loader that confirms it, or why it could not be checked
/// (no readable ESP, no `\EFI\BOOT` loader) and that the declared value was taken.
///
/// Rejects ([`ProblemCode::ArchitectureMismatch`]) when `\EFI\BOOT` holds loaders and none is for
/// the declared architecture.
pub fn check_architecture(
    declared: Architecture,
    loaders: &LoaderOutcome,
    blob_name: &str,
) -> Result<String, Problem> {
    let found = match loaders {
        LoaderOutcome::Unchecked(why) => {
            return Ok(format!(
                "Architecture {declared} accepted as declared; could not check it: {why}."
            ));
        }
        LoaderOutcome::Checked { loaders, .. } if loaders.is_empty() => {
            return Ok(format!(
                "Architecture {declared} accepted as declared; could not check it: the EFI System \
                 Partition has no \\EFI\\BOOT\\BOOTX64.EFI, BOOTAA64.EFI or BOOTIA32.EFI."
            ));
        }
        LoaderOutcome::Checked { loaders, .. } => loaders,
    };
    if let Some(l) = found.iter().find(|l| l.architecture == declared) {
        return Ok(format!(
            "Architecture {declared} confirmed by the disk's {}.",
            l.path
        ));
    }
    let list = found
        .iter()
        .map(|l| format!("{} (the {} loader)", l.path, l.architecture))
        .collect::<Vec<_>>()
        .join(" and ");
    let names = Names::from_blob(blob_name);
    let fix = match found.iter().find(|l| l.architecture != Architecture::X86) {
        Some(other) => format!(
            "If {} is an {arch} image, declare architecture {arch} in the manifest (and publish it \
             to an {arch} image definition: a definition's architecture cannot change). Otherwise \
             upload the {declared} build of the image instead of {}.",
            names.input,
            names.input,
            arch = other.architecture
        ),
        None => format!(
            "Azure boots only 64-bit UEFI loaders. Install the {declared} removable-media loader \
             \\EFI\\BOOT\\{} (for GRUB: `grub-install --target={} --removable`).",
            declared.loader_name(),
            match declared {
                Architecture::Arm64 => "arm64-efi",
                _ => "x86_64-efi",
            }
        ),
    };
    Err(Problem::new(
        ProblemCode::ArchitectureMismatch,
        format!(
            "The manifest declares architecture {declared} but the disk's EFI System Partition \
             holds {list}, and no \\EFI\\BOOT\\{}: the disk is not an {declared} image.",
            declared.loader_name()
        ),
        fix,
    ))
}

/// What makes a partition table an OS disk's: a GPT with an EFI System Partition or a BIOS boot
/// partition, or an MBR with an active (bootable, 0x80) partition or an 0xEF EFI System partition.
/// Plain data partitions (GPT or MBR, any type, none active) are a data disk's layout, as is no
/// partition table at all. `None` for a data disk's layout, else a description of what is there.
pub fn os_layout(scheme: &PartitionScheme) -> Option<String> {
    let what = match scheme {
        PartitionScheme::Gpt {
            has_esp,
            has_bios_boot,
            ..
        } => match (has_esp, has_bios_boot) {
            (true, true) => "a GPT with an EFI System Partition and a BIOS boot partition",
            (true, false) => "a GPT with an EFI System Partition",
            (false, true) => "a GPT with a BIOS boot partition",
            (false, false) => return None,
        },
        PartitionScheme::Mbr {
            has_active,
            has_esp,
            ..
        } => match (has_active, has_esp) {
            (true, _) => "an MBR with an active (bootable) partition",
            (false, true) => "an MBR with an EFI System partition (type 0xEF)",
            (false, false) => return None,
        },
        PartitionScheme::None => return None,
    };
    Some(what.to_string())
}

/// Rejects ([`ProblemCode::DataDiskHasOsLayout`]) a data disk whose partition table is an OS
/// disk's (see [`os_layout`]): usually the OS disk named as a data disk, or a copy of it.
pub fn check_data_disk(lun: u32, data: &Inspection, blob_name: &str) -> Result<(), Problem> {
    let Some(what) = os_layout(&data.partition_scheme) else {
        return Ok(());
    };
    let names = Names::from_blob(blob_name);
    Err(Problem::new(
        ProblemCode::DataDiskHasOsLayout,
        format!(
            "Data disk LUN {lun} ({}) has {what}: that is an OS disk's layout, and a data disk \
             must not have one ({}).",
            names.input,
            data.partition_scheme.describe()
        ),
        format!(
            "If {} is the OS disk, name it as the OS disk in the manifest. Otherwise upload the \
             data disk itself: a disk with data partitions only (remove the boot partition, or \
             clear the active flag with `sfdisk --activate <disk> 0` on the raw image before \
             converting it).",
            names.input
        ),
    ))
}

/// Rejects ([`ProblemCode::DuplicateLun`]) the first LUN given to two data disks. `disks` are
/// (LUN, blob name) in manifest order.
pub fn check_luns(disks: &[(u32, &str)]) -> Result<(), Problem> {
    for (i, (lun, name)) in disks.iter().enumerate() {
        if let Some((_, other)) = disks[..i].iter().find(|(l, _)| l == lun) {
            let used: Vec<u32> = disks.iter().map(|(l, _)| *l).collect();
            let free = (0u32..).find(|l| !used.contains(l)).unwrap_or(0);
            return Err(Problem::new(
                ProblemCode::DuplicateLun,
                format!(
                    "LUN {lun} is given to two data disks, {other} and {name}; each data disk \
                     needs its own LUN."
                ),
                format!(
                    "Give {name} a LUN no other data disk uses (LUN {free} is free) in the \
                     manifest."
                ),
            ));
        }
    }
    Ok(())
}

/// [`inspect`] for a data disk at `lun`, then [`check_data_disk`]: the same footer, size
/// (1 MiB-aligned, fixed VHD only: a dynamic data disk is [`ProblemCode::VhdIsDynamic`]) and
/// partition checks as the OS disk, with messages that name the data disk. Any declared
/// generation in `expectations` is ignored (data disks have none).
pub async fn inspect_data_disk<R: RangeRead>(
    reader: &R,
    blob_len: u64,
    expectations: &Expectations,
    lun: u32,
) -> Result<Inspection, InspectError<R::Error>> {
    let mut ex = expectations.clone();
    ex.declared_generation = None;
    let label = |mut p: Problem| {
        p.message = format!("Data disk LUN {lun}: {}", p.message);
        p
    };
    let inspection = match inspect(reader, blob_len, &ex).await {
        Err(InspectError::Rejected(p)) => return Err(InspectError::Rejected(label(p))),
        other => other?,
    };
    check_data_disk(lun, &inspection, &ex.blob_name).map_err(InspectError::Rejected)?;
    Ok(inspection)
}

/// Where the architecture in an [`OsDiskInspection`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchitectureSource {
    /// The manifest declared it (and the disk did not contradict it).
    Declared,
    /// Nothing was declared; the disk's only 64-bit removable-media loader names it.
    Detected,
    /// Nothing was declared and the disk does not say: Azure's default, x64.
    Default,
}

/// An OS disk that passed every check, and what was learnt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsDiskInspection {
    /// The VHD checks' result; its `notes` also hold the architecture note.
    pub inspection: Inspection,
    /// What the EFI System Partition holds, and what reading it cost.
    pub loaders: LoaderScan,
    /// The architecture to publish with.
    pub architecture: Architecture,
    pub architecture_source: ArchitectureSource,
}

/// The whole OS disk preflight: [`inspect`], then [`find_boot_loaders`], then the architecture
/// (declared, else detected from the one 64-bit loader found, else x64), then
/// [`check_generation`] and [`check_architecture`]. `Err` is a read failure (retry) or a
/// rejection ([`InspectError::Rejected`]).
pub async fn inspect_os_disk<R: RangeRead>(
    reader: &R,
    blob_len: u64,
    expectations: &Expectations,
    security_type: Option<SecurityType>,
    declared_architecture: Option<Architecture>,
) -> Result<OsDiskInspection, InspectError<R::Error>> {
    let mut inspection = inspect(reader, blob_len, expectations).await?;
    let loaders = find_boot_loaders(
        reader,
        &inspection.partition_scheme,
        inspection.virtual_size,
    )
    .await?;
    let found: Vec<Architecture> = loaders
        .outcome
        .architectures()
        .into_iter()
        .filter(|a| *a != Architecture::X86)
        .collect();
    let (architecture, architecture_source) = match (declared_architecture, found.as_slice()) {
        (Some(a), _) => (a, ArchitectureSource::Declared),
        (None, [only]) => (*only, ArchitectureSource::Detected),
        (None, _) => (Architecture::X64, ArchitectureSource::Default),
    };
    check_generation(&inspection, security_type, architecture)?;
    let note = match architecture_source {
        ArchitectureSource::Detected => format!(
            "No architecture was declared; {architecture} detected from the disk's {}.",
            architecture_loader_path(&loaders.outcome, architecture)
        ),
        _ => {
            let note = check_architecture(architecture, &loaders.outcome, &expectations.blob_name)?;
            if architecture_source == ArchitectureSource::Default {
                format!("No architecture was declared, so Azure's default x64 applies. {note}")
            } else {
                note
            }
        }
    };
    inspection.notes.push(note);
    Ok(OsDiskInspection {
        inspection,
        loaders,
        architecture,
        architecture_source,
    })
}

fn architecture_loader_path(outcome: &LoaderOutcome, a: Architecture) -> String {
    match outcome {
        LoaderOutcome::Checked { loaders, .. } => loaders
            .iter()
            .find(|l| l.architecture == a)
            .map(|l| l.path.clone())
            .unwrap_or_default(),
        LoaderOutcome::Unchecked(_) => String::new(),
    }
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
