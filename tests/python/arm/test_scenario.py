"""A full galleon-like scenario driven by the official Python SDKs (azure-mgmt-compute,
azure-mgmt-imagebuilder) against devcloud-arm, with the SDKs' own pollers."""
import os

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

RG = "rg-conformance"
LOC = "westeurope"


def props(resource):
    return resource["properties"]


def test_full_scenario(group, compute, imagebuilder, arm, subscription):
    vhd = os.environ["DEVCLOUD_VHD_URI"]
    account = os.environ["DEVCLOUD_STORAGE_ACCOUNT_ID"]

    # 1. Managed image from the VHD in Azurite.
    image = compute.images.begin_create_or_update(
        RG, "img-from-vhd",
        {"location": LOC, "properties": {"hyperVGeneration": "V2", "storageProfile": {"osDisk": {
            "osType": "Linux", "osState": "Generalized", "blobUri": vhd, "storageAccountType": "Standard_LRS"}}}},
    ).result()
    assert props(image)["provisioningState"] == "Succeeded"
    assert image["type"] == "Microsoft.Compute/images"

    # 2. Gallery and image definition.
    gallery = compute.galleries.begin_create_or_update(
        RG, "galleon_gallery", {"location": LOC, "properties": {"description": "conformance"}}
    ).result()
    assert props(gallery)["provisioningState"] == "Succeeded"
    assert props(gallery)["identifier"]["uniqueName"].endswith("GALLEON_GALLERY")
    definition = compute.gallery_images.begin_create_or_update(
        RG, "galleon_gallery", "ubuntu",
        {"location": LOC, "properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2",
                                          "identifier": {"publisher": "galleon", "offer": "ubuntu", "sku": "24_04"}}},
    ).result()
    assert props(definition)["provisioningState"] == "Succeeded"

    # 3. Version from the managed image, two target regions; the SDK poller must finish without error.
    poller = compute.gallery_image_versions.begin_create_or_update(
        RG, "galleon_gallery", "ubuntu", "1.0.0",
        {"location": LOC, "properties": {
            "publishingProfile": {"targetRegions": [
                {"name": LOC, "regionalReplicaCount": 1},
                {"name": "northeurope", "regionalReplicaCount": 2, "storageAccountType": "Standard_ZRS"}]},
            "storageProfile": {"source": {"id": image["id"]}}}},
    )
    version = poller.result()
    assert props(version)["provisioningState"] == "Succeeded"
    status = compute.gallery_image_versions.get(RG, "galleon_gallery", "ubuntu", "1.0.0", expand="ReplicationStatus")
    rs = props(status)["replicationStatus"]
    assert rs["aggregatedState"] == "Completed"
    assert sorted(s["region"] for s in rs["summary"]) == sorted([LOC, "northeurope"])
    regions = {r["name"]: r for r in props(status)["publishingProfile"]["targetRegions"]}
    assert regions["northeurope"]["regionalReplicaCount"] == 2
    assert regions["northeurope"]["storageAccountType"] == "Standard_ZRS"

    # 4. Add a region with PATCH; read replication status while it replicates, then to completion.
    update = compute.gallery_image_versions.begin_update(
        RG, "galleon_gallery", "ubuntu", "1.0.0",
        {"properties": {"publishingProfile": {"targetRegions": [
            {"name": LOC, "regionalReplicaCount": 1},
            {"name": "northeurope", "regionalReplicaCount": 2, "storageAccountType": "Standard_ZRS"},
            {"name": "eastus", "regionalReplicaCount": 1}]}}},
    )
    during = compute.gallery_image_versions.get(RG, "galleon_gallery", "ubuntu", "1.0.0", expand="ReplicationStatus")
    states = {s["region"]: s["state"] for s in props(during)["replicationStatus"]["summary"]}
    assert states[LOC] == "Completed"
    assert "eastus" in states
    updated = update.result()
    assert props(updated)["provisioningState"] == "Succeeded"
    after = compute.gallery_image_versions.get(RG, "galleon_gallery", "ubuntu", "1.0.0", expand="ReplicationStatus")
    summary = props(after)["replicationStatus"]["summary"]
    assert props(after)["replicationStatus"]["aggregatedState"] == "Completed"
    assert {s["region"] for s in summary} == {LOC, "northeurope", "eastus"}
    assert all(s["progress"] == 100 for s in summary)

    # 5. A version straight from the VHD (osDiskImage source).
    direct = compute.gallery_image_versions.begin_create_or_update(
        RG, "galleon_gallery", "ubuntu", "1.0.1",
        {"location": LOC, "properties": {
            "publishingProfile": {"targetRegions": [{"name": LOC}]},
            "storageProfile": {"osDiskImage": {"source": {"uri": vhd, "storageAccountId": account}}}}},
    ).result()
    assert props(direct)["storageProfile"]["osDiskImage"]["sizeInGB"] >= 1

    # 6. Image Builder: template distributing to the gallery and to a VHD, run it, read its outputs.
    template = imagebuilder.virtual_machine_image_templates.begin_create_or_update(
        RG, "galleon-aib",
        {"location": LOC,
         "identity": {"type": "UserAssigned", "userAssignedIdentities": {
             f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib": {}}},
         "properties": {
             "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                        "sku": "server", "version": "latest"},
             "customize": [{"type": "Shell", "name": "hello", "inline": ["echo hello"]}],
             "distribute": [
                 {"type": "SharedImage", "galleryImageId": definition["id"], "runOutputName": "acg",
                  "targetRegions": [{"name": LOC, "replicaCount": 1}]},
                 {"type": "VHD", "runOutputName": "vhd"}],
             "buildTimeoutInMinutes": 60}},
    ).result()
    assert props(template)["provisioningState"] == "Succeeded"
    imagebuilder.virtual_machine_image_templates.begin_run(RG, "galleon-aib").result()
    ran = imagebuilder.virtual_machine_image_templates.get(RG, "galleon-aib")
    assert props(ran)["lastRunStatus"]["runState"] == "Succeeded", props(ran)["lastRunStatus"]
    outputs = {o["name"]: o for o in imagebuilder.virtual_machine_image_templates.list_run_outputs(RG, "galleon-aib")}
    assert set(outputs) == {"acg", "vhd"}
    built = outputs["acg"]["properties"]["artifactId"]
    assert built.lower().endswith("/versions/1.0.2"), built
    vhd_out = outputs["vhd"]["properties"]["artifactUri"]
    # The VHD artifact really is in Azurite and is a fixed VHD: a version can be made from it.
    from_output = compute.gallery_image_versions.begin_create_or_update(
        RG, "galleon_gallery", "ubuntu", "2.0.0",
        {"location": LOC, "properties": {"storageProfile": {"osDiskImage": {"source": {"uri": vhd_out, "storageAccountId": account}}}}},
    ).result()
    assert props(from_output)["provisioningState"] == "Succeeded"

    # 7. Delete in order; a parent with children refuses first.
    with pytest.raises(HttpResponseError) as refused:
        compute.gallery_images.begin_delete(RG, "galleon_gallery", "ubuntu").result()
    assert refused.value.status_code == 409
    imagebuilder.virtual_machine_image_templates.begin_delete(RG, "galleon-aib").result()
    for v in ["1.0.0", "1.0.1", "1.0.2", "2.0.0"]:
        compute.gallery_image_versions.begin_delete(RG, "galleon_gallery", "ubuntu", v).result()
    compute.gallery_images.begin_delete(RG, "galleon_gallery", "ubuntu").result()
    compute.galleries.begin_delete(RG, "galleon_gallery").result()
    compute.images.begin_delete(RG, "img-from-vhd").result()
    with pytest.raises(ResourceNotFoundError):
        compute.galleries.get(RG, "galleon_gallery")

    # The admin API counted the ARM calls the scenario made.
    counts = requests.get(f"{arm}/_devcloud/requests", timeout=10).json()["byKind"]
    assert counts["GalleryImageVersions_CreateOrUpdate"] == 3
    assert counts["GalleryImageVersions_Update"] == 1
    assert counts["Operations_Get"] > 0


def test_errors_users_see(group, compute):
    dynamic = os.environ["DEVCLOUD_DYNAMIC_VHD_URI"]
    with pytest.raises(ResourceNotFoundError) as no_group:
        compute.galleries.begin_create_or_update("rg-missing", "gallery", {"location": LOC}).result()
    assert no_group.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(HttpResponseError) as bad_vhd:
        compute.images.begin_create_or_update(
            RG, "img-dynamic",
            {"location": LOC, "properties": {"storageProfile": {"osDisk": {
                "osType": "Linux", "osState": "Generalized", "blobUri": dynamic}}}},
        ).result()
    assert bad_vhd.value.error.code == "InvalidParameter"
    assert "fixed" in bad_vhd.value.error.message
    with pytest.raises(HttpResponseError) as bad_name:
        compute.galleries.begin_create_or_update(RG, "bad-name", {"location": LOC}).result()
    assert bad_name.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        compute.gallery_image_versions.get(RG, "nogallery", "nodef", "1.0.0")
    # Azure's tag rules hold for every resource, whatever the SDK lets through.
    with pytest.raises(HttpResponseError) as bad_tag:
        compute.galleries.begin_create_or_update(
            RG, "tagged", {"location": LOC, "tags": {"k8s.io/role": "golden"}}).result()
    assert bad_tag.value.status_code == 400
    assert bad_tag.value.error.code == "InvalidTagNameCharacters"
    with pytest.raises(HttpResponseError) as too_many:
        compute.galleries.begin_create_or_update(
            RG, "tagged", {"location": LOC, "tags": {f"t{i}": "v" for i in range(51)}}).result()
    assert too_many.value.error.code == "InvalidTags"


def test_deleting_a_group_takes_its_resources(resources, compute):
    doomed = "rg-conformance-doomed"
    resources.resource_groups.create_or_update(doomed, {"location": LOC})
    assert resources.resource_groups.check_existence(doomed)
    compute.galleries.begin_create_or_update(doomed, "doomed_gallery", {"location": LOC}).result()
    names = [g.name for g in resources.resource_groups.list()]
    assert doomed in names and "rg-conformance" in names
    # The SDK's poller follows the Location-only operation to its end.
    resources.resource_groups.begin_delete(doomed).result()
    assert not resources.resource_groups.check_existence(doomed)
    with pytest.raises(ResourceNotFoundError) as gone:
        compute.galleries.get(doomed, "doomed_gallery")
    assert gone.value.error.code == "ResourceGroupNotFound"


def test_subscriptions_and_locations(subscriptions, subscription):
    # What `az login --identity` lists, and what `az image builder create` validates regions against.
    assert subscription in [s.subscription_id for s in subscriptions.subscriptions.list()]
    assert subscriptions.subscriptions.get(subscription).state == "Enabled"
    locations = {l.name: l for l in subscriptions.subscriptions.list_locations(subscription)}
    assert locations["westeurope"].display_name == "West Europe"


def test_the_vhd_storage_account_is_readable(resources, storage):
    # Where a VHD's storage account is: what a client checks against the version's region.
    account_id = os.environ["DEVCLOUD_STORAGE_ACCOUNT_ID"]
    parts = account_id.split("/")
    group, name = parts[4], parts[-1]
    resources.resource_groups.create_or_update(group, {"location": LOC})
    account = storage.storage_accounts.get_properties(group, name)
    assert account.location == LOC
    assert os.environ["DEVCLOUD_VHD_URI"].startswith(account.primary_endpoints.blob)
    with pytest.raises(ResourceNotFoundError):
        storage.storage_accounts.get_properties(group, "someoneelse")


def test_location_only_operations(group, compute, arm):
    # Many Azure providers answer with only a Location header; the SDK's poller must follow it.
    rule = requests.post(f"{arm}/_devcloud/faults", timeout=10, json={
        "kind": "Galleries_CreateOrUpdate", "count": 1, "action": {"type": "locationOnly"}})
    assert rule.status_code == 201
    gallery = compute.galleries.begin_create_or_update(group, "located_gallery", {"location": LOC}).result()
    assert props(gallery)["provisioningState"] == "Succeeded"
    faults = requests.get(f"{arm}/_devcloud/faults", timeout=10).json()["value"]
    applied = [f["applied"] for f in faults if f["id"] == rule.json()["id"]]
    assert applied == [1], f"the rule did not apply once: {faults}"
    compute.galleries.begin_delete(group, "located_gallery").result()


def test_lists_page_with_next_link(resources, arm, subscription, credential):
    # The local ARM pages at a few items; the SDK's pager must follow nextLink to see them all.
    names = {f"rg-page-{i}" for i in range(4)}
    for name in names:
        resources.resource_groups.create_or_update(name, {"location": LOC})
    assert names <= {g.name for g in resources.resource_groups.list()}
    token = credential.get_token("https://management.azure.com/.default").token
    first = requests.get(f"{arm}/subscriptions/{subscription}/resourcegroups?api-version=2025-04-01",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert "nextLink" in first and len(first["value"]) < len(names)


def test_trusted_launch_arm64_definition_round_trips(group, compute):
    # Every image feature property a platform team sets comes back exactly as sent, through the
    # SDK's models; the generation rule and immutability are the errors the SDK surfaces.
    compute.galleries.begin_create_or_update(group, "features_gallery", {"location": LOC}).result()
    wanted = {
        "osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2", "architecture": "Arm64",
        "identifier": {"publisher": "galleon", "offer": "ubuntu-arm", "sku": "24_04-tl"},
        "features": [
            {"name": "SecurityType", "value": "TrustedLaunch"},
            {"name": "DiskControllerTypes", "value": "SCSI, NVMe"},
            {"name": "IsAcceleratedNetworkSupported", "value": "True"},
            {"name": "IsHibernateSupported", "value": "False"},
        ],
        "description": "Ubuntu 24.04 for Arm64, Trusted Launch",
        "eula": "https://example.com/eula",
        "privacyStatementUri": "https://example.com/privacy",
        "releaseNoteUri": "https://example.com/notes",
        "endOfLifeDate": "2030-01-01T00:00:00+00:00",
        "recommended": {"vCPUs": {"min": 2, "max": 16}, "memory": {"min": 4, "max": 64}},
        "disallowed": {"diskTypes": ["Standard_LRS"]},
        "purchasePlan": {"name": "plan", "publisher": "pub", "product": "prod"},
    }
    created = compute.gallery_images.begin_create_or_update(
        group, "features_gallery", "ubuntu-arm", {"location": LOC, "properties": wanted}).result()
    got = compute.gallery_images.get(group, "features_gallery", "ubuntu-arm")
    for resource in (created, got):
        p = props(resource)
        for key, value in wanted.items():
            assert p[key] == value, (key, p[key], value)
        assert p["provisioningState"] == "Succeeded"

    with pytest.raises(HttpResponseError) as v1:
        compute.gallery_images.begin_create_or_update(
            group, "features_gallery", "tl-v1",
            {"location": LOC, "properties": {**wanted, "hyperVGeneration": "V1", "architecture": "x64",
                                              "identifier": {"publisher": "galleon", "offer": "o", "sku": "v1"}}},
        ).result()
    assert v1.value.status_code == 400 and v1.value.error.code == "InvalidParameter"
    assert "TrustedLaunch" in v1.value.error.message

    with pytest.raises(HttpResponseError) as changed:
        compute.gallery_images.begin_create_or_update(
            group, "features_gallery", "ubuntu-arm",
            {"location": LOC, "properties": {**wanted, "architecture": "x64"}}).result()
    assert changed.value.status_code == 409 and changed.value.error.code == "PropertyChangeNotAllowed"
