//! Routing: what an ARM request addresses (its operation kind, subscription and target), from its
//! path and method, case-insensitively as ARM matches paths.

use warp::http::Method;

use crate::arm::Req;
use crate::model::{Kind, OpFamily};

/// What a request addresses.
#[derive(Debug, Clone)]
pub enum Target {
    Metadata,
    Subscriptions,
    Subscription,
    Locations,
    OpStatus {
        family: OpFamily,
        id: String,
        monitor: bool,
    },
    ResourceGroups,
    ResourceGroup {
        rg: String,
    },
    Collection {
        kind: Kind,
        rg: Option<String>,
        parent: Option<String>,
    },
    Item {
        kind: Kind,
        rg: String,
        key: String,
        id: String,
        name: String,
        parent: Option<String>,
        type_path: String,
    },
    TemplateAction {
        rg: String,
        key: String,
        name: String,
        action: &'static str,
    },
    RunOutputs {
        rg: String,
        key: String,
        name: String,
        output: Option<String>,
    },
    /// `POST …/galleries/{g}/share` (GallerySharingProfile_Update).
    GalleryShare {
        rg: String,
        key: String,
        name: String,
    },
    /// `Microsoft.Storage/storageAccounts` in a group (`name` None = the list) or, with `rg` None,
    /// the subscription's list.
    StorageAccount {
        rg: Option<String>,
        name: Option<String>,
    },
    /// Platform image versions of a publisher/offer/sku in a region (`version` None = the list).
    PlatformImageVersions {
        location: String,
        publisher: String,
        offer: String,
        sku: String,
        version: Option<String>,
    },
    /// A Compute type Azure has but devcloud does not simulate (`virtualMachines`, `disks`, …): an
    /// item (`name` Some) is never found, a list is empty.
    NotSimulated {
        rg: Option<String>,
        type_path: String,
        name: Option<String>,
    },
    Unknown,
}

impl Target {
    /// The resource group a request inside a group addresses (not the group itself).
    pub fn resource_group(&self) -> Option<&str> {
        match self {
            Target::Collection { rg, .. }
            | Target::StorageAccount { rg, .. }
            | Target::NotSimulated { rg, .. } => rg.as_deref(),
            Target::Item { rg, .. }
            | Target::TemplateAction { rg, .. }
            | Target::RunOutputs { rg, .. }
            | Target::GalleryShare { rg, .. } => Some(rg),
            _ => None,
        }
    }
}

/// A classified request: its kind (operation id), subscription and target.
#[derive(Debug, Clone)]
pub struct Route {
    pub kind: String,
    pub anonymous: bool,
    pub subscription: Option<String>,
    pub target: Target,
}

/// Microsoft.Compute resource types Azure has that devcloud does not simulate.
pub const NOT_SIMULATED: &[&str] = &[
    "virtualMachines",
    "virtualMachineScaleSets",
    "disks",
    "snapshots",
    "availabilitySets",
    "diskEncryptionSets",
    "diskAccesses",
    "proximityPlacementGroups",
    "sshPublicKeys",
    "hostGroups",
    "capacityReservationGroups",
    "restorePointCollections",
    "cloudServices",
];

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn not_simulated(t: &str) -> bool {
    NOT_SIMULATED.iter().any(|n| eq(n, t))
}

pub(crate) fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub(crate) fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "Images",
        Kind::Gallery => "Galleries",
        Kind::Definition => "GalleryImages",
        Kind::Version => "GalleryImageVersions",
        Kind::Template => "VirtualMachineImageTemplates",
    }
}

pub(crate) fn item_verb(m: &Method) -> &'static str {
    match *m {
        Method::PUT => "CreateOrUpdate",
        Method::PATCH => "Update",
        Method::DELETE => "Delete",
        Method::GET => "Get",
        Method::HEAD => "CheckExistence",
        _ => "Unsupported",
    }
}

/// Classifies a request by its path and method.
pub fn classify(req: &Req) -> Route {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let m = &req.method;
    let mut r = Route {
        kind: "Unknown".into(),
        anonymous: false,
        subscription: None,
        target: Target::Unknown,
    };
    if segs.len() == 2 && eq(segs[0], "metadata") && eq(segs[1], "endpoints") {
        r.kind = "Metadata_Endpoints".into();
        r.anonymous = true;
        r.target = Target::Metadata;
        return r;
    }
    if segs.len() == 1 && eq(segs[0], "subscriptions") {
        r.kind = "Subscriptions_List".into();
        r.target = Target::Subscriptions;
        return r;
    }
    if segs.len() < 2 || !eq(segs[0], "subscriptions") {
        return r;
    }
    let sub = segs[1].to_string();
    r.subscription = Some(sub.clone());
    let rest = &segs[2..];
    if rest.is_empty() {
        r.kind = "Subscriptions_Get".into();
        r.target = Target::Subscription;
        return r;
    }
    if rest.len() == 1 && eq(rest[0], "locations") {
        r.kind = "Subscriptions_ListLocations".into();
        r.target = Target::Locations;
        return r;
    }
    if rest.len() == 1 && eq(rest[0], "resourceGroups") {
        r.kind = "ResourceGroups_List".into();
        r.target = Target::ResourceGroups;
        return r;
    }
    // ARM's own operations (resource group deletion), polled through Location.
    if rest.len() == 2 && eq(rest[0], "operationresults") {
        r.kind = "Operations_Get".into();
        r.target = Target::OpStatus {
            family: OpFamily::Resources,
            id: rest[1].to_string(),
            monitor: true,
        };
        return r;
    }
    // Operation status: providers/{ns}/locations/{loc}/{capsOperations|operations}/{id}
    if rest.len() == 6 && eq(rest[0], "providers") && eq(rest[2], "locations") {
        let family = match (rest[1], rest[4]) {
            (ns, c) if eq(ns, "Microsoft.Compute") && eq(c, "capsOperations") => {
                Some(OpFamily::Caps)
            }
            (ns, c) if eq(ns, "Microsoft.Compute") && eq(c, "operations") => {
                Some(OpFamily::Compute)
            }
            (ns, c) if eq(ns, "Microsoft.VirtualMachineImages") && eq(c, "operations") => {
                Some(OpFamily::ImageBuilder)
            }
            _ => None,
        };
        if let Some(family) = family {
            r.kind = "Operations_Get".into();
            r.target = Target::OpStatus {
                family,
                id: rest[5].to_string(),
                monitor: req.q("monitor").is_some_and(|v| eq(v, "true")),
            };
        }
        return r;
    }
    // VM image versions: providers/Microsoft.Compute/locations/{loc}/publishers/{p}/artifacttypes/
    // vmimage/offers/{o}/skus/{s}/versions[/{v}].
    if (rest.len() == 13 || rest.len() == 14)
        && eq(rest[0], "providers")
        && eq(rest[1], "Microsoft.Compute")
        && eq(rest[2], "locations")
        && eq(rest[4], "publishers")
        && eq(rest[6], "artifacttypes")
        && eq(rest[7], "vmimage")
        && eq(rest[8], "offers")
        && eq(rest[10], "skus")
        && eq(rest[12], "versions")
    {
        r.kind = if rest.len() == 13 {
            "VirtualMachineImages_List".into()
        } else {
            "VirtualMachineImages_Get".into()
        };
        r.target = Target::PlatformImageVersions {
            location: rest[3].to_string(),
            publisher: rest[5].to_string(),
            offer: rest[9].to_string(),
            sku: rest[11].to_string(),
            version: rest.get(13).map(|s| s.to_string()),
        };
        return r;
    }
    // Subscription-level lists.
    if rest.len() == 3
        && eq(rest[0], "providers")
        && eq(rest[1], "Microsoft.Storage")
        && eq(rest[2], "storageAccounts")
    {
        r.kind = "StorageAccounts_List".into();
        r.target = Target::StorageAccount {
            rg: None,
            name: None,
        };
        return r;
    }
    if rest.len() == 3 && eq(rest[0], "providers") {
        let kind = if eq(rest[1], "Microsoft.Compute") && eq(rest[2], "images") {
            Some(Kind::Image)
        } else if eq(rest[1], "Microsoft.Compute") && eq(rest[2], "galleries") {
            Some(Kind::Gallery)
        } else if eq(rest[1], "Microsoft.VirtualMachineImages") && eq(rest[2], "imageTemplates") {
            Some(Kind::Template)
        } else {
            None
        };
        if let Some(kind) = kind {
            r.kind = format!("{}_List", prefix(kind));
            r.target = Target::Collection {
                kind,
                rg: None,
                parent: None,
            };
        } else if eq(rest[1], "Microsoft.Compute") && not_simulated(rest[2]) {
            r.kind = format!("{}_List", upper_first(rest[2]));
            r.target = Target::NotSimulated {
                rg: None,
                type_path: format!("Microsoft.Compute/{}", rest[2]),
                name: None,
            };
        }
        return r;
    }
    if !eq(rest[0], "resourceGroups") || rest.len() < 2 {
        return r;
    }
    let rg = rest[1].to_string();
    let rgid = format!("/subscriptions/{sub}/resourceGroups/{rg}");
    if rest.len() == 2 {
        r.kind = format!("ResourceGroups_{}", item_verb(m));
        r.target = Target::ResourceGroup { rg };
        return r;
    }
    if rest.len() < 5 || !eq(rest[2], "providers") {
        return r;
    }
    let ns = rest[3];
    let p = &rest[4..];
    if eq(ns, "Microsoft.Storage") && eq(p[0], "storageAccounts") && p.len() <= 2 {
        r.kind = if p.len() == 1 {
            "StorageAccounts_ListByResourceGroup".into()
        } else if *m == Method::GET {
            "StorageAccounts_GetProperties".into()
        } else {
            format!("StorageAccounts_{}", item_verb(m))
        };
        r.target = Target::StorageAccount {
            rg: Some(rg),
            name: p.get(1).map(|s| s.to_string()),
        };
        return r;
    }
    if eq(ns, "Microsoft.Compute") && not_simulated(p[0]) {
        r.kind = format!("{}_{}", upper_first(p[0]), item_verb(m));
        r.target = Target::NotSimulated {
            rg: Some(rg),
            type_path: format!("Microsoft.Compute/{}", p.join("/")),
            name: (p.len() > 1).then(|| p[p.len() - 1].to_string()),
        };
        return r;
    }
    if eq(ns, "Microsoft.Compute") {
        if eq(p[0], "images") {
            match p.len() {
                1 => {
                    r.kind = "Images_ListByResourceGroup".into();
                    r.target = Target::Collection {
                        kind: Kind::Image,
                        rg: Some(rg),
                        parent: None,
                    };
                }
                2 => {
                    let id = format!("{rgid}/providers/Microsoft.Compute/images/{}", p[1]);
                    r.kind = format!("Images_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Image,
                        key: id.to_lowercase(),
                        id,
                        name: p[1].to_string(),
                        parent: None,
                        type_path: format!("Microsoft.Compute/images/{}", p[1]),
                        rg,
                    };
                }
                _ => {}
            }
            return r;
        }
        if eq(p[0], "galleries") {
            let gid = p
                .get(1)
                .map(|g| format!("{rgid}/providers/Microsoft.Compute/galleries/{g}"));
            let shape = (
                p.len(),
                p.get(2).is_some_and(|s| eq(s, "images")),
                p.get(4).is_some_and(|s| eq(s, "versions")),
            );
            match shape {
                (1, _, _) => {
                    r.kind = "Galleries_ListByResourceGroup".into();
                    r.target = Target::Collection {
                        kind: Kind::Gallery,
                        rg: Some(rg),
                        parent: None,
                    };
                }
                (2, _, _) => {
                    let id = gid.unwrap_or_default();
                    r.kind = format!("Galleries_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Gallery,
                        key: id.to_lowercase(),
                        id,
                        name: p[1].to_string(),
                        parent: None,
                        type_path: format!("Microsoft.Compute/galleries/{}", p[1]),
                        rg,
                    };
                }
                (3, false, _) if eq(p[2], "share") => {
                    r.kind = if *m == Method::POST {
                        "GallerySharingProfile_Update".into()
                    } else {
                        "GallerySharingProfile_Unsupported".into()
                    };
                    r.target = Target::GalleryShare {
                        rg,
                        key: gid.unwrap_or_default().to_lowercase(),
                        name: p[1].to_string(),
                    };
                }
                (3, true, _) => {
                    r.kind = "GalleryImages_ListByGallery".into();
                    r.target = Target::Collection {
                        kind: Kind::Definition,
                        rg: Some(rg),
                        parent: gid.map(|g| g.to_lowercase()),
                    };
                }
                (4, true, _) => {
                    let g = gid.unwrap_or_default();
                    let id = format!("{g}/images/{}", p[3]);
                    r.kind = format!("GalleryImages_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Definition,
                        key: id.to_lowercase(),
                        id,
                        name: p[3].to_string(),
                        parent: Some(g.to_lowercase()),
                        type_path: format!("Microsoft.Compute/galleries/{}/images/{}", p[1], p[3]),
                        rg,
                    };
                }
                (5, true, true) => {
                    let d = format!("{}/images/{}", gid.unwrap_or_default(), p[3]);
                    r.kind = "GalleryImageVersions_ListByGalleryImage".into();
                    r.target = Target::Collection {
                        kind: Kind::Version,
                        rg: Some(rg),
                        parent: Some(d.to_lowercase()),
                    };
                }
                (6, true, true) => {
                    let d = format!("{}/images/{}", gid.unwrap_or_default(), p[3]);
                    let id = format!("{d}/versions/{}", p[5]);
                    r.kind = format!("GalleryImageVersions_{}", item_verb(m));
                    r.target = Target::Item {
                        kind: Kind::Version,
                        key: id.to_lowercase(),
                        id,
                        name: p[5].to_string(),
                        parent: Some(d.to_lowercase()),
                        type_path: format!(
                            "Microsoft.Compute/galleries/{}/images/{}/versions/{}",
                            p[1], p[3], p[5]
                        ),
                        rg,
                    };
                }
                _ => {}
            }
        }
        return r;
    }
    if eq(ns, "Microsoft.VirtualMachineImages") && eq(p[0], "imageTemplates") {
        let tid = p
            .get(1)
            .map(|t| format!("{rgid}/providers/Microsoft.VirtualMachineImages/imageTemplates/{t}"));
        match p.len() {
            1 => {
                r.kind = "VirtualMachineImageTemplates_ListByResourceGroup".into();
                r.target = Target::Collection {
                    kind: Kind::Template,
                    rg: Some(rg),
                    parent: None,
                };
            }
            2 => {
                let id = tid.unwrap_or_default();
                r.kind = format!("VirtualMachineImageTemplates_{}", item_verb(m));
                r.target = Target::Item {
                    kind: Kind::Template,
                    key: id.to_lowercase(),
                    id,
                    name: p[1].to_string(),
                    parent: None,
                    type_path: format!("Microsoft.VirtualMachineImages/imageTemplates/{}", p[1]),
                    rg,
                };
            }
            3 if eq(p[2], "run") || eq(p[2], "cancel") => {
                let action = if eq(p[2], "run") { "Run" } else { "Cancel" };
                r.kind = format!("VirtualMachineImageTemplates_{action}");
                r.target = Target::TemplateAction {
                    rg,
                    key: tid.unwrap_or_default().to_lowercase(),
                    name: p[1].to_string(),
                    action,
                };
            }
            3 | 4 if eq(p[2], "runOutputs") => {
                r.kind = if p.len() == 3 {
                    "VirtualMachineImageTemplates_ListRunOutputs".into()
                } else {
                    "VirtualMachineImageTemplates_GetRunOutput".into()
                };
                r.target = Target::RunOutputs {
                    rg,
                    key: tid.unwrap_or_default().to_lowercase(),
                    name: p[1].to_string(),
                    output: p.get(3).map(|s| s.to_string()),
                };
            }
            _ => {}
        }
    }
    r
}
