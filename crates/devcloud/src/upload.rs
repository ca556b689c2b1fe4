//! What `devcloud upload` puts in blob storage for a user's own VHD: the blob names (under
//! `<container>/<image definition>/`) and the manifest (events/manifest.schema.json) that commits it;
//! and fixed VHDs made with qemu-img for the demo and the scale run.

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// Makes an empty fixed VHD of `size` (qemu-img's notation: `8M`, `1G`) at `path` with qemu-img, as
/// Azure wants it (`subformat=fixed,force_size`).
pub async fn make_fixed_vhd(path: &std::path::Path, size: &str) -> Result<()> {
    let status = tokio::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=fixed,force_size",
        ])
        .arg(path)
        .arg(size)
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("running qemu-img (apt-get install qemu-utils): {e}"))?;
    if !status.success() {
        bail!("qemu-img create {} {size} failed: {status}", path.display());
    }
    Ok(())
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The file's name (no directories).
    pub file_name: String,
    pub definition: Option<String>,
    pub os_type: String,
    pub generation: String,
    /// `name[=replicas[:storageAccountType]]`, as in GALLEON_TARGET_REGIONS.
    pub regions: Vec<String>,
    pub version: Option<String>,
    pub gallery: Option<String>,
    /// publisher/offer/sku, used when galleon creates the image definition.
    pub identifier: Option<(String, String, String)>,
    pub publish_from: Option<String>,
}

/// The blobs to write and the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub definition: String,
    /// `<definition>/<name>.vhd`
    pub vhd_blob: String,
    /// `<definition>/<name>.manifest.json`
    pub manifest_blob: String,
    pub manifest: Value,
}

/// Blob-name-safe: letters, digits, `.`, `_`, `-`; anything else becomes `-`.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// An image definition name from a file stem: the schema's pattern (1-80 of letters, digits, `_.-`,
/// starting and ending with a letter or digit).
fn definition_from(stem: &str) -> String {
    let s = safe(stem);
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    s.chars()
        .take(80)
        .collect::<String>()
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `westeurope`, `northeurope=2`, `eastus2=1:Standard_ZRS` → a manifest target region.
fn region(spec: &str) -> Result<Value> {
    let (name, rest) = spec.split_once('=').unwrap_or((spec, ""));
    let name = name.trim();
    if name.is_empty() {
        bail!("empty region in {spec:?}");
    }
    let mut region = json!({"name": name});
    if !rest.is_empty() {
        let (count, storage) = rest.split_once(':').unwrap_or((rest, ""));
        if !count.is_empty() {
            let n: u32 = count.parse().map_err(|_| {
                anyhow::anyhow!("replica count {count:?} in {spec:?} is not a number")
            })?;
            region["regionalReplicaCount"] = n.into();
        }
        if !storage.is_empty() {
            region["storageAccountType"] = storage.into();
        }
    }
    Ok(region)
}

impl Request {
    /// The blob names and the manifest. Values are passed through as given: galleon checks them against
    /// the schema and rejects with the reason, as it would for any uploader.
    pub fn plan(&self) -> Result<Plan> {
        let file = safe(&self.file_name);
        let lower = file.to_ascii_lowercase();
        let stem = if lower.ends_with(".vhd") {
            &file[..file.len() - 4]
        } else {
            file.as_str()
        };
        if stem.is_empty() {
            bail!("{:?} has no name before .vhd", self.file_name);
        }
        let definition = match &self.definition {
            Some(d) => d.clone(),
            None => definition_from(stem),
        };
        if definition.is_empty() || definition.contains('/') {
            bail!(
                "cannot make an image definition name from {:?}: pass --definition",
                self.file_name
            );
        }
        let vhd = format!("{stem}.vhd");
        let mut manifest = json!({
            "vhd": vhd,
            "imageDefinition": definition,
            "osType": self.os_type,
            "hyperVGeneration": self.generation,
            "tags": {"uploadedWith": "devcloud-upload"},
        });
        if !self.regions.is_empty() {
            manifest["targetRegions"] = self
                .regions
                .iter()
                .flat_map(|r| r.split(','))
                .filter(|r| !r.trim().is_empty())
                .map(region)
                .collect::<Result<Vec<_>>>()?
                .into();
        }
        if let Some(v) = &self.version {
            manifest["version"] = v.as_str().into();
        }
        if let Some(g) = &self.gallery {
            manifest["gallery"] = g.as_str().into();
        }
        if let Some((publisher, offer, sku)) = &self.identifier {
            manifest["identifier"] = json!({"publisher": publisher, "offer": offer, "sku": sku});
        }
        if let Some(p) = &self.publish_from {
            manifest["publishFrom"] = p.as_str().into();
        }
        Ok(Plan {
            vhd_blob: format!("{definition}/{vhd}"),
            manifest_blob: format!("{definition}/{stem}.manifest.json"),
            definition,
            manifest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(file: &str) -> Request {
        Request {
            file_name: file.to_owned(),
            os_type: "Linux".to_owned(),
            generation: "V2".to_owned(),
            ..Request::default()
        }
    }

    fn schema() -> jsonschema::Validator {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/manifest.schema.json"
        );
        let schema: Value =
            serde_json::from_slice(&std::fs::read(path).expect("schema")).expect("json");
        jsonschema::validator_for(&schema).expect("valid schema")
    }

    #[test]
    fn defaults_follow_the_file_name_and_satisfy_the_schema() {
        let plan = request("My Disk (2).VHD").plan().expect("plan");
        assert_eq!(plan.definition, "My-Disk--2");
        assert_eq!(plan.vhd_blob, "My-Disk--2/My-Disk--2-.vhd");
        assert_eq!(plan.manifest_blob, "My-Disk--2/My-Disk--2-.manifest.json");
        assert!(schema().is_valid(&plan.manifest), "{:#}", plan.manifest);
    }

    #[test]
    fn every_option_lands_in_the_manifest() {
        let mut r = request("base.vhd");
        r.definition = Some("ubuntu-2404".into());
        r.regions = vec![
            "westeurope=2:Standard_ZRS,northeurope".into(),
            "eastus2=1".into(),
        ];
        r.version = Some("1.2.3".into());
        r.gallery = Some("golden".into());
        r.identifier = Some(("contoso".into(), "ubuntu".into(), "24_04".into()));
        r.publish_from = Some("managedImage".into());
        let plan = r.plan().expect("plan");
        assert_eq!(plan.vhd_blob, "ubuntu-2404/base.vhd");
        assert_eq!(plan.manifest_blob, "ubuntu-2404/base.manifest.json");
        let m = &plan.manifest;
        assert_eq!(
            m["targetRegions"],
            json!([{"name": "westeurope", "regionalReplicaCount": 2, "storageAccountType": "Standard_ZRS"},
                   {"name": "northeurope"}, {"name": "eastus2", "regionalReplicaCount": 1}])
        );
        assert_eq!(m["version"], "1.2.3");
        assert_eq!(m["identifier"]["sku"], "24_04");
        assert_eq!(m["publishFrom"], "managedImage");
        assert!(schema().is_valid(m), "{m:#}");
    }

    #[test]
    fn bad_regions_are_refused_here() {
        let mut r = request("a.vhd");
        r.regions = vec!["westeurope=two".into()];
        assert!(format!("{:#}", r.plan().expect_err("bad count")).contains("not a number"));
        assert!(request(".vhd").plan().is_err());
    }
}
