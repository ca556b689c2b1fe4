"""Distribution features through the official SDKs: the gallery share action
(gallery_sharing_profile.begin_update), and a gallery image version made from a version in another
tenant's subscription, with a token of that tenant from the local Entra token endpoint
(azure-identity's ClientSecretCredential) sent as x-ms-authorization-auxiliary
(azure-mgmt-core's AuxiliaryAuthenticationPolicy), as a multi-tenant app does against Azure; and the
same app's token with no secret at all, from a managed identity's token as its federated client
assertion (azure-identity's ClientAssertionCredential), as galleon gets it.

Extra environment (set by crates/devcloud-arm/tests/python_conformance.rs): DEVCLOUD_ENTRA_AUTHORITY,
DEVCLOUD_HOME_TENANT, DEVCLOUD_OTHER_TENANT, DEVCLOUD_OTHER_SUBSCRIPTION_ID, DEVCLOUD_APP_ID,
DEVCLOUD_APP_SECRET.
"""
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientAssertionCredential, ClientSecretCredential, ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    Gallery,
    GalleryImage,
    GalleryImageIdentifier,
    GalleryImageVersion,
    GalleryImageVersionStorageProfile,
    GalleryArtifactVersionFullSource,
    GalleryProperties,
    GalleryImageProperties,
    GalleryImageVersionProperties,
    SharingProfile,
    SharingProfileGroup,
    SharingUpdate,
)
from azure.mgmt.core.policies import AuxiliaryAuthenticationPolicy
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import SCOPES, env

SUB_A = "0a0a0a0a-1111-4222-8333-444444444444"
SUB_B = "0b0b0b0b-1111-4222-8333-444444444444"
TENANT_T = "0c0c0c0c-1111-4222-8333-444444444444"


def test_gallery_sharing_profile_update(group, compute):
    gallery = compute.galleries.begin_create_or_update(
        group,
        "shared",
        Gallery(location="westeurope", properties=GalleryProperties(sharing_profile=SharingProfile(permissions="Groups"))),
    ).result()
    assert gallery.properties.sharing_profile.permissions == "Groups"
    update = SharingUpdate(
        operation_type="Add",
        groups=[
            SharingProfileGroup(type="Subscriptions", ids=[SUB_A, SUB_B]),
            SharingProfileGroup(type="AADTenants", ids=[TENANT_T]),
        ],
    )
    result = compute.gallery_sharing_profile.begin_update(group, "shared", update).result()
    assert result.operation_type == "Add"
    assert [g.type for g in result.groups] == ["Subscriptions", "AADTenants"]
    got = compute.galleries.get(group, "shared")
    groups = {g.type: g.ids for g in got.properties.sharing_profile.groups}
    assert groups == {"Subscriptions": [SUB_A, SUB_B], "AADTenants": [TENANT_T]}
    assert got.properties.sharing_status.aggregated_state == "Succeeded"

    removed = compute.gallery_sharing_profile.begin_update(
        group, "shared", SharingUpdate(operation_type="Remove", groups=[SharingProfileGroup(type="Subscriptions", ids=[SUB_A])])
    ).result()
    assert removed.operation_type == "Remove"
    got = compute.galleries.get(group, "shared")
    assert {g.type: g.ids for g in got.properties.sharing_profile.groups}["Subscriptions"] == [SUB_B]
    compute.gallery_sharing_profile.begin_update(group, "shared", SharingUpdate(operation_type="Reset")).result()
    assert not compute.galleries.get(group, "shared").properties.sharing_profile.groups

    # A private gallery cannot be shared with subscriptions; ids must be GUIDs.
    compute.galleries.begin_create_or_update(group, "private", Gallery(location="westeurope")).result()
    with pytest.raises(HttpResponseError) as e:
        compute.gallery_sharing_profile.begin_update(group, "private", update).result()
    assert e.value.status_code == 409 and e.value.error.code == "OperationNotAllowed"
    with pytest.raises(HttpResponseError) as e:
        compute.gallery_sharing_profile.begin_update(
            group, "shared", SharingUpdate(operation_type="Add", groups=[SharingProfileGroup(type="Subscriptions", ids=["sub-1"])])
        ).result()
    assert e.value.status_code == 400 and e.value.error.code == "InvalidParameter"


def _definition(compute, group, gallery):
    compute.galleries.begin_create_or_update(group, gallery, Gallery(location="westeurope")).result()
    return compute.gallery_images.begin_create_or_update(
        group,
        gallery,
        "def",
        GalleryImage(
            location="westeurope",
            properties=GalleryImageProperties(
                os_type="Linux",
                os_state="Generalized",
                hyper_v_generation="V2",
                identifier=GalleryImageIdentifier(publisher="p", offer="o", sku=gallery),
            ),
        ),
    ).result()


def _version_from(source_id):
    return GalleryImageVersion(
        location="westeurope",
        properties=GalleryImageVersionProperties(
            storage_profile=GalleryImageVersionStorageProfile(source=GalleryArtifactVersionFullSource(id=source_id))
        ),
    )


def test_version_from_another_tenants_gallery(arm, subscription, credential, group, compute):
    authority = env("DEVCLOUD_ENTRA_AUTHORITY")
    other_tenant = env("DEVCLOUD_OTHER_TENANT")
    other_sub = env("DEVCLOUD_OTHER_SUBSCRIPTION_ID")
    app, secret = env("DEVCLOUD_APP_ID"), env("DEVCLOUD_APP_SECRET")
    vhd, storage_account = env("DEVCLOUD_VHD_URI"), env("DEVCLOUD_STORAGE_ACCOUNT_ID")

    # The app's token for the other tenant, from the Entra stand-in, as from login.microsoftonline.com.
    other = ClientSecretCredential(other_tenant, app, secret, authority=authority, disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError) as e:
        ClientSecretCredential(other_tenant, app, "wrong", authority=authority, disable_instance_discovery=True).get_token(*SCOPES)
    assert "AADSTS7000215" in str(e.value)

    # The partner's source version, made in its own subscription with its own token.
    partner = ComputeManagementClient(other, other_sub, base_url=arm, credential_scopes=SCOPES, polling_interval=0.05)
    ResourceManagementClient(other, other_sub, base_url=arm, credential_scopes=SCOPES).resource_groups.create_or_update(
        "rg-partner", {"location": "westeurope"}
    )
    image = partner.images.begin_create_or_update(
        "rg-partner",
        "base",
        {
            "location": "westeurope",
            "properties": {
                "hyperVGeneration": "V2",
                "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": vhd}},
            },
        },
    ).result()
    _definition(partner, "rg-partner", "partner")
    source = partner.gallery_image_versions.begin_create_or_update(
        "rg-partner", "partner", "def", "1.0.0", _version_from(image.id)
    ).result()
    assert source.properties.provisioning_state == "Succeeded"

    # The home identity cannot use it alone: ARM's linked-access check.
    _definition(compute, group, "consumer")
    with pytest.raises(HttpResponseError) as e:
        compute.gallery_image_versions.begin_create_or_update(group, "consumer", "def", "1.0.0", _version_from(source.id)).result()
    assert e.value.status_code == 403 and e.value.error.code == "LinkedAuthorizationFailed"

    # With the other tenant's token in x-ms-authorization-auxiliary, it can.
    aux = AuxiliaryAuthenticationPolicy([other], *SCOPES)
    consumer = ComputeManagementClient(
        credential, subscription, base_url=arm, credential_scopes=SCOPES, polling_interval=0.05, per_call_policies=[aux]
    )
    made = consumer.gallery_image_versions.begin_create_or_update(
        group, "consumer", "def", "1.0.0", _version_from(source.id)
    ).result()
    assert made.properties.provisioning_state == "Succeeded"
    assert made.properties.storage_profile.source.id == source.id
    assert storage_account  # the VHD's account lives in the home tenant's subscription


def test_app_token_from_a_managed_identitys_federated_assertion():
    authority = env("DEVCLOUD_ENTRA_AUTHORITY")
    other_tenant, app = env("DEVCLOUD_OTHER_TENANT"), env("DEVCLOUD_APP_ID")
    managed = ManagedIdentityCredential()

    def assertion():
        return managed.get_token("api://AzureADTokenExchange/.default").token

    other = ClientAssertionCredential(other_tenant, app, assertion, authority=authority, disable_instance_discovery=True)
    token = other.get_token(*SCOPES)
    assert token.token and token.expires_on > 0
    # An assertion for another audience is not a federated credential of the app.
    wrong = ClientAssertionCredential(
        other_tenant,
        app,
        lambda: managed.get_token("https://management.azure.com/.default").token,
        authority=authority,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as e:
        wrong.get_token(*SCOPES)
    assert "AADSTS700212" in str(e.value)
