//! Name rules of the real services (arm-contract.md §5) and the Azure region list.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::ArmError;

static GALLERY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]{0,78}[A-Za-z0-9])?$").unwrap());
static DEFINITION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9])?$").unwrap());
static VERSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d+\.\d+\.\d+$").unwrap());
static IMAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$").unwrap());
static TEMPLATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.-]{1,64}$").unwrap());
static IDENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.-]+$").unwrap());

pub fn gallery(name: &str) -> Result<(), ArmError> {
    if GALLERY.is_match(name) {
        return Ok(());
    }
    Err(ArmError::invalid_parameter(
        "Gallery name is invalid. Allowed characters are English alphanumeric characters, with underscores, and periods allowed in the middle, up to 80 characters total. All other special characters, including dashes, are disallowed.",
        "galleryName",
    ))
}

pub fn definition(name: &str) -> Result<(), ArmError> {
    if DEFINITION.is_match(name) {
        return Ok(());
    }
    Err(ArmError::invalid_parameter(
        format!(
            "The entity name 'galleryImageName' is invalid according to its validation rule: ^[^_\\W][\\w-._]{{0,79}}(?<![-.])$. Gallery image name '{name}' may contain English alphanumeric characters, underscores, hyphens and periods, must start and end with a letter or digit, up to 80 characters."
        ),
        "galleryImageName",
    ))
}

pub fn version(name: &str) -> Result<(), ArmError> {
    let ok = VERSION.is_match(name)
        && name
            .split('.')
            .all(|p| p.parse::<u64>().is_ok_and(|n| n <= i32::MAX as u64));
    if ok {
        return Ok(());
    }
    Err(ArmError::invalid_parameter(
        "The image version name is invalid. The image version name should follow Major(int).Minor(int).Patch(int) format, for e.g: 1.0.0, 2018.12.1 etc.",
        "galleryImageVersionName",
    ))
}

pub fn image(name: &str) -> Result<(), ArmError> {
    if IMAGE.is_match(name) {
        return Ok(());
    }
    // [mem] ARM's generic name check wording.
    Err(ArmError::new(
        400,
        "InvalidResourceName",
        format!(
            "The resource name '{name}' is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
        ),
    ))
}

pub fn template(name: &str, what: &str) -> Result<(), ArmError> {
    if TEMPLATE.is_match(name) {
        return Ok(());
    }
    Err(ArmError::invalid_parameter(
        format!("The {what} '{name}' is invalid: it must match ^[A-Za-z0-9-_.]{{1,64}}$."),
        what,
    ))
}

/// Resource group names: 1–90 letters, digits, `-`, `.`, `(`, `)` or `_`, not ending in `.`.
pub fn resource_group(name: &str) -> Result<(), ArmError> {
    let bad: String = name
        .chars()
        .filter(|c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '(' | ')' | '_')))
        .collect();
    if !bad.is_empty() {
        // [obs] ARM's wording.
        return Err(ArmError::new(
            400,
            "InvalidResourceGroup",
            format!(
                "The provided resource group name '{name}' has these invalid characters: '{bad}'. The name can only be a letter, digit, '-', '.', '(', ')' or '_'."
            ),
        ));
    }
    if name.is_empty() || name.chars().count() > 90 || name.ends_with('.') {
        return Err(ArmError::new(
            400,
            "InvalidResourceGroup",
            format!(
                "The provided resource group name '{name}' is invalid: it must be 1 to 90 characters long and must not end with a period."
            ),
        ));
    }
    Ok(())
}

/// Definition identifier part: publisher ≤128, offer/sku ≤64; letters, digits, `-`, `.`, `_`; not ending in `.`.
pub fn identifier_part(field: &str, value: &str, max: usize) -> Result<(), ArmError> {
    if !value.is_empty() && value.len() <= max && IDENT.is_match(value) && !value.ends_with('.') {
        return Ok(());
    }
    Err(ArmError::invalid_parameter(
        format!(
            "The gallery image {field} '{value}' is invalid. It may contain English letters, digits, hyphens, periods and underscores, may not end with a period, and must be 1-{max} characters long."
        ),
        &format!("galleryImage.properties.identifier.{field}"),
    ))
}

/// Normalized region name: lower case without spaces ("West US" → "westus").
pub fn norm_region(r: &str) -> String {
    r.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// (normalized, display) names of Azure public regions.
pub const REGIONS: &[(&str, &str)] = &[
    ("eastus", "East US"),
    ("eastus2", "East US 2"),
    ("westus", "West US"),
    ("westus2", "West US 2"),
    ("westus3", "West US 3"),
    ("centralus", "Central US"),
    ("northcentralus", "North Central US"),
    ("southcentralus", "South Central US"),
    ("westcentralus", "West Central US"),
    ("canadacentral", "Canada Central"),
    ("canadaeast", "Canada East"),
    ("brazilsouth", "Brazil South"),
    ("mexicocentral", "Mexico Central"),
    ("northeurope", "North Europe"),
    ("westeurope", "West Europe"),
    ("uksouth", "UK South"),
    ("ukwest", "UK West"),
    ("francecentral", "France Central"),
    ("germanywestcentral", "Germany West Central"),
    ("norwayeast", "Norway East"),
    ("swedencentral", "Sweden Central"),
    ("switzerlandnorth", "Switzerland North"),
    ("polandcentral", "Poland Central"),
    ("italynorth", "Italy North"),
    ("spaincentral", "Spain Central"),
    ("eastasia", "East Asia"),
    ("southeastasia", "Southeast Asia"),
    ("japaneast", "Japan East"),
    ("japanwest", "Japan West"),
    ("koreacentral", "Korea Central"),
    ("australiaeast", "Australia East"),
    ("australiasoutheast", "Australia Southeast"),
    ("centralindia", "Central India"),
    ("southindia", "South India"),
    ("westindia", "West India"),
    ("uaenorth", "UAE North"),
    ("southafricanorth", "South Africa North"),
    ("qatarcentral", "Qatar Central"),
    ("israelcentral", "Israel Central"),
    ("newzealandnorth", "New Zealand North"),
];

/// Regions with availability zones (where ZRS storage exists). From Azure's region list; a region
/// missing here is treated as having none.
pub const ZONAL_REGIONS: &[&str] = &[
    "eastus",
    "eastus2",
    "westus2",
    "westus3",
    "centralus",
    "southcentralus",
    "canadacentral",
    "brazilsouth",
    "mexicocentral",
    "northeurope",
    "westeurope",
    "uksouth",
    "francecentral",
    "germanywestcentral",
    "norwayeast",
    "swedencentral",
    "switzerlandnorth",
    "polandcentral",
    "italynorth",
    "spaincentral",
    "eastasia",
    "southeastasia",
    "japaneast",
    "koreacentral",
    "australiaeast",
    "centralindia",
    "uaenorth",
    "southafricanorth",
    "qatarcentral",
    "israelcentral",
    "newzealandnorth",
];

/// Whether a (normalized) region has availability zones.
pub fn has_zones(region: &str) -> bool {
    ZONAL_REGIONS.contains(&region)
}

/// Checks a location is a known region; returns its normalized name.
pub fn region(loc: &str, target: &str) -> Result<String, ArmError> {
    let n = norm_region(loc);
    if REGIONS.iter().any(|(r, _)| *r == n) {
        return Ok(n);
    }
    let list: Vec<&str> = REGIONS.iter().map(|(r, _)| *r).collect();
    // [mem] ARM's wording for an unknown location.
    Err(ArmError::new(
        400,
        "LocationNotAvailableForResourceType",
        format!(
            "The provided location '{loc}' is not available for resource type '{target}'. List of available regions for the resource type is '{}'.",
            list.join(",")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(gallery("my_gallery.1").is_ok());
        assert!(gallery("my-gallery").is_err());
        assert!(gallery("_g").is_err());
        assert!(gallery(&"a".repeat(81)).is_err());
        assert!(definition("ubuntu-22.04_x").is_ok());
        assert!(definition("-x").is_err());
        assert!(version("1.0.0").is_ok());
        assert!(version("2147483648.0.0").is_err());
        assert!(version("1.0").is_err());
        assert!(image("img_").is_ok());
        assert!(image("img.").is_err());
        assert!(template("a b", "imageTemplateName").is_err());
        assert!(identifier_part("offer", "x.", 64).is_err());
        assert_eq!(norm_region("West US 2"), "westus2");
        assert!(region("nowhere", "galleries").is_err());
        assert!(has_zones("westeurope") && !has_zones("westus"));
        assert!(
            ZONAL_REGIONS
                .iter()
                .all(|z| REGIONS.iter().any(|(r, _)| r == z))
        );
    }
}
