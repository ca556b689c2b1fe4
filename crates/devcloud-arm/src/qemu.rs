//! The fixed VHDs the local Image Builder leaves, made with `qemu-img` (a required tool of the local
//! cloud): a sparse raw disk holding the OS disk layout, converted to a fixed VHD with `force_size`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// The program the disks are made with.
pub const QEMU_IMG: &str = "qemu-img";

/// A fixed VHD on local disk (in its own temporary directory, removed on drop).
#[derive(Debug)]
pub struct FixedVhd {
    dir: PathBuf,
    /// The `.vhd` file: the virtual size plus the 512-byte footer.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The (offset, length) ranges of the file that hold data, as `qemu-img map` reports them: the
    /// rest is a hole that reads as zeros, and is not uploaded.
    pub extents: Vec<(u64, u64)>,
}

impl Drop for FixedVhd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes a fixed VHD of `virtual_size` bytes (a multiple of 1 MiB) whose disk holds `pages` (byte
/// offset, data; e.g. an OS disk layout from [`crate::osdisk::layout`]) and zeros elsewhere.
pub async fn fixed_vhd(virtual_size: u64, pages: &[(u64, Vec<u8>)]) -> Result<FixedVhd, String> {
    fixed_vhd_with(QEMU_IMG, virtual_size, pages).await
}

/// [`fixed_vhd`] with the `qemu-img` program named.
pub async fn fixed_vhd_with(
    program: &str,
    virtual_size: u64,
    pages: &[(u64, Vec<u8>)],
) -> Result<FixedVhd, String> {
    let dir = std::env::temp_dir().join(format!("devcloud-vhd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let raw = dir.join("disk.raw");
    let path = dir.join("disk.vhd");
    // From here on, dropping the value removes the directory.
    let mut disk = FixedVhd {
        dir,
        path,
        len: 0,
        extents: Vec::new(),
    };
    let size = virtual_size.to_string();
    run(program, &["create", "-q", "-f", "raw", s(&raw), &size]).await?;
    write_pages(&raw, pages).await?;
    run(
        program,
        &[
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed,force_size=on",
            s(&raw),
            s(&disk.path),
        ],
    )
    .await?;
    let _ = tokio::fs::remove_file(&raw).await;
    disk.len = tokio::fs::metadata(&disk.path)
        .await
        .map_err(|e| format!("reading {}: {e}", disk.path.display()))?
        .len();
    let map = run(
        program,
        &["map", "-f", "raw", "--output=json", s(&disk.path)],
    )
    .await?;
    disk.extents = data_extents(&map)?;
    Ok(disk)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

async fn write_pages(raw: &Path, pages: &[(u64, Vec<u8>)]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("writing {}: {e}", raw.display());
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .await
        .map_err(fail)?;
    for (at, data) in pages {
        f.seek(std::io::SeekFrom::Start(*at)).await.map_err(fail)?;
        f.write_all(data).await.map_err(fail)?;
    }
    f.flush().await.map_err(fail)
}

/// Runs `program args`; returns its standard output.
async fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                format!(
                    "{program} was not found: the local Image Builder makes the VHDs its builds \
                     leave with qemu-img, a required tool of the local cloud (install it: \
                     `apt-get install qemu-utils`, `brew install qemu`)."
                )
            } else {
                format!("running {program}: {e}")
            }
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The data ranges of `qemu-img map --output=json`.
fn data_extents(map: &str) -> Result<Vec<(u64, u64)>, String> {
    let v: Value =
        serde_json::from_str(map).map_err(|e| format!("reading qemu-img map's output: {e}"))?;
    let Some(items) = v.as_array() else {
        return Err(format!("qemu-img map answered no list: {map}"));
    };
    Ok(items
        .iter()
        .filter(|m| m["data"].as_bool() == Some(true))
        .filter_map(|m| Some((m["start"].as_u64()?, m["length"].as_u64()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_qemu_img_is_a_clear_error() {
        let e = fixed_vhd_with("qemu-img-not-installed", 4 << 20, &[])
            .await
            .unwrap_err();
        assert!(
            e.starts_with("qemu-img-not-installed was not found") && e.contains("qemu-utils"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_disk_is_a_fixed_vhd_holding_the_pages() {
        let pages = vec![(0, vec![0xAB; 512]), (1 << 20, vec![0xCD; 1024])];
        let disk = fixed_vhd(4 << 20, &pages).await.unwrap();
        assert_eq!(disk.len, (4 << 20) + 512);
        let bytes = std::fs::read(&disk.path).unwrap();
        assert!(bytes[..512].iter().all(|b| *b == 0xAB));
        assert!(bytes[1 << 20..(1 << 20) + 1024].iter().all(|b| *b == 0xCD));
        let footer = &bytes[4 << 20..];
        assert_eq!(&footer[..8], b"conectix");
        // Disk type 2 (fixed); original and current size exactly the virtual size (force_size).
        assert_eq!(footer[60..64], 2u32.to_be_bytes());
        assert_eq!(footer[40..48], (4u64 << 20).to_be_bytes());
        assert_eq!(footer[48..56], (4u64 << 20).to_be_bytes());
        // The extents cover every non-zero byte, and the footer.
        let covered = |at: usize| {
            disk.extents
                .iter()
                .any(|(s, l)| (*s as usize..(*s + *l) as usize).contains(&at))
        };
        assert!(covered(bytes.len() - 1));
        assert!((0..bytes.len()).all(|i| bytes[i] == 0 || covered(i)));
        let dir = disk.dir.clone();
        drop(disk);
        assert!(!dir.exists());
    }
}
